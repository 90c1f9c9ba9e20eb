//! Deterministic Kubernetes names, hosts and labels, derived from preview keys and job ids.
//!
//! Determinism is what lets a worker adopt what an earlier attempt created: the same key
//! always yields the same namespace, host and label. Every output is valid whatever the input
//! (long, unicode, uppercase, punctuation-only or empty): names are slugged, and a short hash
//! of the *original* string is appended whenever slugging lost information or had to
//! truncate, so two keys that slug alike still get different names.
//!
//! - namespace: `slipway-pv-<slug>-<hash8>` (always hashed), a DNS-1123 label.
//! - host label: `pr-<n>-<repo>` for a GitHub-style key `owner/repo#n` whose repo name is
//!   already a lowercase DNS label that fits (readable, as in DESIGN.md), else the same with
//!   `-<hash8>` appended; any other key gives `<slug>-<hash8>` (`pv-<hash8>` when nothing
//!   sluggable remains). The owner is not part of
//!   the GitHub form, so `a/app#1` and `b/app#1` share a host; a deployment serving several
//!   owners with same-named repositories should prefer keys that include more.
//! - build Job: `slipway-build-<first 8 hex of the job id>-a<attempt>`.
//! - label values: kept when already valid, else sanitized and hashed.

use crate::job::{JobId, JobKind};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The value of [`LABEL_MANAGED_BY`] on everything Slipway creates.
pub const MANAGED_BY: &str = "slipway";
pub const LABEL_JOB_ID: &str = "slipway.dev/job-id";
pub const LABEL_KIND: &str = "slipway.dev/kind";
/// Holds [`label_value`] of the preview key (a key rarely fits a label as it is).
pub const LABEL_PREVIEW: &str = "slipway.dev/preview";
/// Annotation holding the preview key verbatim, since the label may be hashed.
pub const ANNOTATION_PREVIEW_KEY: &str = "slipway.dev/preview-key";
/// The server-side apply field manager.
pub const FIELD_MANAGER: &str = "slipway";

pub const NAMESPACE_PREFIX: &str = "slipway-pv-";
pub const BUILD_JOB_PREFIX: &str = "slipway-build-";
/// Prefix of the Jobs that read a repository for a build (`source: auto`).
pub const SOURCE_JOB_PREFIX: &str = "slipway-source-";

/// The longest DNS-1123 label (and Kubernetes label value).
pub const MAX_LABEL_LEN: usize = 63;
const HASH_LEN: usize = 8;

/// First 8 hex digits of sha256(`s`).
pub fn short_hash(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    hex::encode(&digest[..HASH_LEN / 2])
}

/// Lowercase ASCII letters and digits of `s`, every other run of characters turned into one
/// `-`, trimmed of `-`, at most `max` characters. Possibly empty.
pub fn slugify(s: &str, max: usize) -> String {
    let mut out = String::new();
    for c in s.chars().flat_map(char::to_lowercase) {
        if out.len() >= max {
            break;
        }
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.truncate(max);
    out.trim_end_matches('-').to_owned()
}

/// `<slug truncated to fit>-<hash>`, or the hash alone when nothing sluggable remains, within
/// `max` characters.
fn slug_with_hash(slug: &str, key: &str, max: usize) -> String {
    let keep = max.saturating_sub(HASH_LEN + 1);
    let slug = slug[..slug.len().min(keep)].trim_end_matches('-');
    if slug.is_empty() {
        short_hash(key)
    } else {
        format!("{slug}-{}", short_hash(key))
    }
}

/// The namespace of a preview: `slipway-pv-<slug>-<hash8>`.
pub fn preview_namespace(key: &str) -> String {
    let room = MAX_LABEL_LEN - NAMESPACE_PREFIX.len();
    format!(
        "{NAMESPACE_PREFIX}{}",
        slug_with_hash(&slugify(key, room), key, room)
    )
}

/// `owner/repo#number` as GitHub spells it (owner: letters, digits, `-`, up to 39; repo:
/// letters, digits, `.`, `_`, `-`, up to 100; number: 1-10 digits).
pub fn parse_github_key(key: &str) -> Option<(&str, &str, &str)> {
    let (owner, rest) = key.split_once('/')?;
    let (repo, number) = rest.split_once('#')?;
    let owner_ok = (1..=39).contains(&owner.len())
        && owner
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let repo_ok = (1..=100).contains(&repo.len())
        && repo
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    let number_ok = (1..=10).contains(&number.len()) && number.bytes().all(|b| b.is_ascii_digit());
    (owner_ok && repo_ok && number_ok).then_some((owner, repo, number))
}

/// The first DNS label of a preview's host (see the module docs).
pub fn preview_host_label(key: &str) -> String {
    if let Some((_, repo, number)) = parse_github_key(key) {
        let prefix = format!("pr-{number}-");
        let room = MAX_LABEL_LEN - prefix.len();
        // Slugify one past the room, so a repo that exactly fits is kept and one that
        // does not is detected and hashed.
        let slug = slugify(repo, room + 1);
        // Readable only when slugging lost nothing, so `org/Repo#1` and `org/repo#1` differ.
        return if slug == repo && slug.len() <= room {
            format!("{prefix}{slug}")
        } else {
            format!("{prefix}{}", slug_with_hash(&slug, key, room))
        };
    }
    match slugify(key, MAX_LABEL_LEN) {
        // A bare hash may be all digits; a prefix keeps the host obviously a name.
        slug if slug.is_empty() => format!("pv-{}", short_hash(key)),
        slug => slug_with_hash(&slug, key, MAX_LABEL_LEN),
    }
}

/// `<host label>.<domain>`; the domain (operator configuration) is lowercased and stripped of
/// surrounding dots.
pub fn preview_host(key: &str, domain: &str) -> String {
    let domain = domain.trim_matches('.').to_ascii_lowercase();
    let label = preview_host_label(key);
    if domain.is_empty() {
        label
    } else {
        format!("{label}.{domain}")
    }
}

/// The name of the Kubernetes Job for one attempt of a build: the whole job id (a UUIDv7's
/// leading hex digits are its timestamp, so any prefix of it is shared by every job created
/// in the same minute), at most 58 characters (a Job name becomes a label value: 63 at most).
pub fn build_job_name(job_id: JobId, attempt: u32) -> String {
    format!("{BUILD_JOB_PREFIX}{}-a{attempt}", job_id.simple())
}

/// The source Job of a build's attempt (`slipway-source-<job id>-a<attempt>`, at most 59
/// characters): deterministic, so a resumed worker adopts it.
pub fn source_job_name(job_id: JobId, attempt: u32) -> String {
    format!("{SOURCE_JOB_PREFIX}{}-a{attempt}", job_id.simple())
}

/// A Kubernetes label value for `s`: `s` itself when valid, else its characters outside
/// `[A-Za-z0-9._-]` replaced by `-`, trimmed to alphanumerics at both ends, truncated, and
/// followed by `-<hash8>` of the original.
pub fn label_value(s: &str) -> String {
    if is_label_value(s) {
        return s.to_owned();
    }
    let mapped: String = s
        .chars()
        .take(MAX_LABEL_LEN)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let keep = MAX_LABEL_LEN - HASH_LEN - 1;
    let trimmed = mapped.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    let cut =
        trimmed[..trimmed.len().min(keep)].trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    if cut.is_empty() {
        short_hash(s)
    } else {
        format!("{cut}-{}", short_hash(s))
    }
}

/// The labels DESIGN.md puts on everything Slipway creates.
pub fn standard_labels(
    job_id: Option<JobId>,
    kind: Option<JobKind>,
    preview: Option<&str>,
) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([(LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned())]);
    if let Some(id) = job_id {
        labels.insert(LABEL_JOB_ID.to_owned(), id.hyphenated().to_string());
    }
    if let Some(kind) = kind {
        labels.insert(LABEL_KIND.to_owned(), kind.as_str().to_owned());
    }
    if let Some(key) = preview {
        labels.insert(LABEL_PREVIEW.to_owned(), label_value(key));
    }
    labels
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_LABEL_LEN
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// DNS-1123 labels joined by `.`, at most 253 characters.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// Empty, or `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?` of at most 63 characters.
pub fn is_label_value(s: &str) -> bool {
    let b = s.as_bytes();
    b.is_empty()
        || (b.len() <= MAX_LABEL_LEN
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric())
}

/// A label key: `[prefix/]name`, prefix a DNS-1123 subdomain, name a non-empty label value.
pub fn is_label_key(s: &str) -> bool {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    prefix.is_none_or(is_dns1123_subdomain) && !name.is_empty() && is_label_value(name)
}

/// What counts as "the same repository" for the per-repository build cap: host (with a port
/// if given) and path, lowercased, without the scheme, a trailing `/` or `.git`, so
/// `https://GitHub.com/Org/App.git` and `https://github.com/org/app` share one cap.
pub fn repository_key(url: &str) -> String {
    let lower = url.trim().to_ascii_lowercase();
    let rest = lower.split_once("://").map_or(lower.as_str(), |(_, r)| r);
    let rest = rest.trim_end_matches('/');
    let rest = rest.strip_suffix(".git").unwrap_or(rest);
    rest.trim_end_matches('/').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Hostile keys from the issue: very long, unicode, uppercase, dots, slashes, leading
    /// digits, empty, symbols only.
    fn hostile_keys() -> Vec<String> {
        let mut keys: Vec<String> = [
            "",
            "org/repo#42",
            "org/Repo#42",
            "ORG/REPO#42",
            "org/repo#042",
            "org/repo#43",
            "org/repo.js#1",
            "org/repo-js#1",
            "org/repo_js#1",
            "org/.github#7",
            "org/---#7",
            "org/___#7",
            "a/b#1",
            "a/b#1 ",
            "a/b# 1",
            "feature/x",
            "Feature/X",
            "feature-x",
            "feature.x",
            "feature_x",
            "feature//x",
            "123",
            "123abc",
            "0",
            "-",
            "--",
            ".",
            "..",
            "/",
            "#",
            "!@#$%^&*()",
            "日本語",
            "日本語のブランチ",
            "İstanbul",
            "straße",
            "STRASSE",
            "ǅ",
            "😀",
            "😀😀",
            "a\u{0}b",
            "a\nb",
            "\u{202e}evil",
            "   ",
            "x",
            "X",
            "pr-42-repo",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        keys.push("a".repeat(63));
        keys.push("a".repeat(64));
        keys.push("a".repeat(1000));
        keys.push(format!("{}b", "a".repeat(999)));
        keys.push(format!("org/{}#1", "r".repeat(100)));
        keys.push(format!("org/{}#1", "r".repeat(99)));
        keys.push(format!("org/{}#1234567890", "r".repeat(100)));
        keys.push(format!("org/{}#1", "r".repeat(52)));
        keys.push(format!("org/{}#1", "r".repeat(58)));
        keys.push(format!("org/{}#1", "r".repeat(59)));
        keys.push("ü".repeat(300));
        keys.push("/.".repeat(200));
        keys
    }

    #[test]
    fn namespaces_are_valid_and_distinct() {
        let keys = hostile_keys();
        let mut seen = HashSet::new();
        for k in &keys {
            let ns = preview_namespace(k);
            assert!(is_dns1123_label(&ns), "{k:?} -> {ns:?}");
            assert!(ns.starts_with(NAMESPACE_PREFIX), "{ns}");
            assert_eq!(ns, preview_namespace(k), "deterministic");
            assert!(seen.insert(ns.clone()), "collision for {k:?}: {ns}");
        }
        assert_eq!(
            preview_namespace("org/repo#42"),
            format!("slipway-pv-org-repo-42-{}", short_hash("org/repo#42"))
        );
        assert_eq!(
            preview_namespace(""),
            format!("slipway-pv-{}", short_hash(""))
        );
        assert_eq!(preview_namespace(&"a".repeat(1000)).len(), 63);
    }

    #[test]
    fn host_labels_are_valid_and_distinct() {
        let keys = hostile_keys();
        let mut seen = HashSet::new();
        for k in &keys {
            let label = preview_host_label(k);
            assert!(is_dns1123_label(&label), "{k:?} -> {label:?}");
            assert!(seen.insert(label.clone()), "collision for {k:?}: {label}");
            let host = preview_host(k, "192.168.49.2.nip.io");
            assert!(is_dns1123_subdomain(&host), "{host}");
        }
    }

    #[test]
    fn host_labels_follow_the_design_examples() {
        assert_eq!(preview_host_label("org/repo#42"), "pr-42-repo");
        assert_eq!(preview_host_label("org/app#42"), "pr-42-app");
        assert_eq!(
            preview_host("org/app#42", ".192.168.49.2.NIP.io."),
            "pr-42-app.192.168.49.2.nip.io"
        );
        assert_eq!(preview_host_label("org/my-app#7"), "pr-7-my-app");
        assert_eq!(
            preview_host_label("Org/My_App.js#7"),
            format!("pr-7-my-app-js-{}", short_hash("Org/My_App.js#7"))
        );
        // Exactly fits: kept; one more character: truncated and hashed.
        let fits = format!("org/{}#1", "r".repeat(58));
        assert_eq!(
            preview_host_label(&fits),
            format!("pr-1-{}", "r".repeat(58))
        );
        let over = format!("org/{}#1", "r".repeat(59));
        let label = preview_host_label(&over);
        assert_eq!(label.len(), 63);
        assert!(label.ends_with(&short_hash(&over)));
        // A repo name with nothing sluggable still gets a unique label.
        assert_eq!(
            preview_host_label("org/___#7"),
            format!("pr-7-{}", short_hash("org/___#7"))
        );
        assert_eq!(
            preview_host_label("日本語"),
            format!("pv-{}", short_hash("日本語"))
        );
        // Other keys are always hashed.
        assert_eq!(
            preview_host_label("Feature/X"),
            format!("feature-x-{}", short_hash("Feature/X"))
        );
        // The documented limit of the readable form: the owner is not in the host.
        assert_eq!(preview_host_label("a/app#1"), preview_host_label("b/app#1"));
    }

    #[test]
    fn github_keys() {
        assert_eq!(parse_github_key("org/repo#42"), Some(("org", "repo", "42")));
        for bad in [
            "org/repo",
            "org#1",
            "/repo#1",
            "org/#1",
            "org/repo#",
            "org/repo#x",
            "o/r/x#1",
            "o_o/r#1",
            "org/repo#12345678901",
        ] {
            assert_eq!(parse_github_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn build_job_names() {
        let id = JobId::parse_str("0190a5b2-c3d4-7e8f-9a0b-1c2d3e4f5a6b").unwrap();
        assert_eq!(
            build_job_name(id, 1),
            "slipway-build-0190a5b2c3d47e8f9a0b1c2d3e4f5a6b-a1"
        );
        assert_eq!(
            build_job_name(id, u32::MAX),
            "slipway-build-0190a5b2c3d47e8f9a0b1c2d3e4f5a6b-a4294967295"
        );
        assert!(build_job_name(JobId::max(), u32::MAX).len() <= 63);
        // Jobs created in the same minute (same UUIDv7 timestamp prefix) get distinct names.
        let same_minute = JobId::parse_str("0190a5b2-c3d4-7e8f-9a0b-ffffffffffff").unwrap();
        assert_ne!(build_job_name(id, 1), build_job_name(same_minute, 1));
        assert!(is_dns1123_label(&build_job_name(JobId::max(), u32::MAX)));
        assert!(is_dns1123_label(&build_job_name(JobId::nil(), 0)));
        assert!(is_dns1123_label(&source_job_name(JobId::max(), u32::MAX)));
        assert_ne!(source_job_name(id, 1), build_job_name(id, 1));
    }

    #[test]
    fn label_values_are_valid_and_distinct() {
        let keys = hostile_keys();
        let mut seen = HashSet::new();
        for k in &keys {
            let v = label_value(k);
            assert!(is_label_value(&v), "{k:?} -> {v:?}");
            assert!(seen.insert(v.clone()), "collision for {k:?}: {v}");
        }
        assert_eq!(label_value("feature_x.Y-1"), "feature_x.Y-1");
        assert_eq!(label_value(""), "");
        assert_eq!(
            label_value("org/app#42"),
            format!("org-app-42-{}", short_hash("org/app#42"))
        );
        assert_eq!(label_value("###"), short_hash("###"));
    }

    #[test]
    fn standard_labels_are_valid() {
        for key in [
            LABEL_MANAGED_BY,
            LABEL_JOB_ID,
            LABEL_KIND,
            LABEL_PREVIEW,
            ANNOTATION_PREVIEW_KEY,
        ] {
            assert!(is_label_key(key), "{key}");
        }
        let labels = standard_labels(
            Some(JobId::max()),
            Some(JobKind::Launch),
            Some("org/app#42"),
        );
        assert_eq!(labels.len(), 4);
        assert_eq!(labels[LABEL_MANAGED_BY], "slipway");
        assert_eq!(labels[LABEL_KIND], "launch");
        for (k, v) in &labels {
            assert!(is_label_key(k) && is_label_value(v), "{k}={v}");
        }
    }

    #[test]
    fn checkers_reject_what_they_should() {
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", "é", &"a".repeat(64)] {
            assert!(!is_dns1123_label(bad), "{bad:?}");
        }
        for bad in [
            "",
            ".a",
            "a.",
            "a..b",
            "A.b",
            &format!("{}.a", "a".repeat(253)),
        ] {
            assert!(!is_dns1123_subdomain(bad), "{bad:?}");
        }
        for bad in ["-a", "a-", "a b", "a/b", &"a".repeat(64)] {
            assert!(!is_label_value(bad), "{bad:?}");
        }
        for bad in ["", "/a", "a/", "A_/b", "a/b/c"] {
            assert!(!is_label_key(bad), "{bad:?}");
        }
    }

    #[test]
    fn repository_keys_ignore_case_scheme_and_git_suffix() {
        for url in [
            "https://github.com/org/app",
            "https://GitHub.com/Org/App.git",
            "HTTPS://github.com/org/app/",
            "https://github.com/org/app.git/",
        ] {
            assert_eq!(repository_key(url), "github.com/org/app", "{url}");
        }
        assert_eq!(
            repository_key("https://git.example:8443/a/b/c.git"),
            "git.example:8443/a/b/c"
        );
        assert_ne!(
            repository_key("https://github.com/org/app"),
            repository_key("https://github.com/org/app2")
        );
    }
}
