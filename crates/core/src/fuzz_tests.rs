//! Property-style tests: thousands of seeded random strings (ASCII, punctuation, control
//! characters, multi-byte and case-changing Unicode, invisible characters) and random JSON
//! bodies through every parser, validator and name generator. Nothing may panic, every
//! generated Kubernetes name must be valid, and accepted values must keep their invariants.

use crate::auth::{TokenSet, bearer_token};
use crate::naming::{self, is_dns1123_label, is_dns1123_subdomain, is_label_value};
use crate::payload::{self, CleanupRequest, LaunchRequest, PipelineRequest};
use crate::validate::{self, Limits, Validate};
use crate::{BuildRequest, image, quantity};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;

/// Pieces that make strings interesting for these parsers.
const ATOMS: &[&str] = &[
    "a",
    "Z",
    "0",
    "9",
    "-",
    "_",
    ".",
    "/",
    ":",
    "@",
    "#",
    "%",
    "?",
    "+",
    "~",
    " ",
    "\t",
    "\n",
    "\0",
    "\u{1b}",
    "\u{7f}",
    "\\",
    "\"",
    "'",
    "`",
    "$",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    "*",
    "=",
    ",",
    ";",
    "é",
    "ß",
    "İ",
    "ǅ",
    "ﬁ",
    "日本",
    "😀",
    "\u{202e}",
    "\u{200b}",
    "\u{feff}",
    "\u{301}",
    "٣",
    "Ⅻ",
    "\u{2028}",
    "https://",
    "ssh://",
    "git@",
    "github.com",
    "..",
    "::",
    "sha256:",
    "Mi",
    "Gi",
    "m",
    "e9",
    "localhost:5000",
    "org/app",
    "#42",
    "enqueue",
    "read",
    "admin",
    "Bearer ",
    "\u{10ffff}",
];

fn random_string(rng: &mut StdRng) -> String {
    let len = match rng.random_range(0..10) {
        0 => rng.random_range(100..400),
        _ => rng.random_range(0..12),
    };
    (0..len)
        .map(|_| {
            if rng.random_range(0..8) == 0 {
                // Any scalar value at all.
                char::from_u32(rng.random_range(0..0x11_0000))
                    .unwrap_or('x')
                    .to_string()
            } else {
                ATOMS[rng.random_range(0..ATOMS.len())].to_owned()
            }
        })
        .collect()
}

#[test]
fn random_strings_never_panic_and_names_stay_valid() {
    let mut rng = StdRng::seed_from_u64(0x0051_1ba7);
    let limits = Limits::default();
    let mut namespaces: HashMap<String, String> = HashMap::new();
    for _ in 0..5000 {
        let s = random_string(&mut rng);
        let _ = image::parse(&s);
        let _ = quantity::parse(&s, quantity::Unit::Bytes);
        let _ = quantity::parse(&s, quantity::Unit::Millicores);
        let _ = validate::repository(&s, "repository", &limits);
        let _ = validate::commit(&s, "commit");
        let _ = validate::rel_path(&s, "context", true);
        let _ = validate::rel_path(&s, "dockerfile", false);
        let _ = validate::build_image(&s, "image");
        let _ = validate::job_id(&s, "from_build");
        let _ = validate::var_name(&s, "env");
        let _ = validate::target(&s, "target");
        let _ = validate::secret_name(&s, "secret");
        let _ = validate::secret_key_ref(&s, "secret_env.X");
        let _ = validate::health_path(&s, "health_path");
        let _ = naming::parse_github_key(&s);
        let _ = TokenSet::parse(&s);
        let _ = bearer_token(&s);
        let _ = payload::decode::<PipelineRequest>(s.as_bytes());

        if let Ok(key) = validate::preview_key(&s, "preview") {
            assert!(!key.is_empty() && key.chars().count() <= 200);
        }
        if let Ok(r) = image::parse(&s) {
            assert_eq!(r.to_string(), s, "accepted references round-trip");
        }
        let ns = naming::preview_namespace(&s);
        assert!(is_dns1123_label(&ns), "{s:?} -> {ns}");
        if let Some(other) = namespaces.insert(ns.clone(), s.clone()) {
            assert_eq!(other, s, "two keys share namespace {ns}");
        }
        let label = naming::preview_host_label(&s);
        assert!(is_dns1123_label(&label), "{s:?} -> {label}");
        let host = naming::preview_host(&s, "preview.example.com");
        assert!(is_dns1123_subdomain(&host), "{s:?} -> {host}");
        let value = naming::label_value(&s);
        assert!(is_label_value(&value), "{s:?} -> {value}");
        assert_eq!(naming::slugify(&s, 63), naming::slugify(&s, 63));

        // The same string in every field of every request.
        let _ = BuildRequest {
            repository: s.clone(),
            commit: s.clone(),
            context: Some(s.clone()),
            dockerfile: Some(s.clone()),
            image: s.clone(),
            tag: Some(s.clone()),
            build_args: [(s.clone(), s.clone())].into(),
            target: Some(s.clone()),
            secrets: None,
            preview: Some(s.clone()),
        }
        .validate(&limits);
        let _ = LaunchRequest {
            preview: s.clone(),
            image: Some(s.clone()),
            env: [(s.clone(), s.clone())].into(),
            secret_env: [(s.clone(), s.clone())].into(),
            health_path: Some(s.clone()),
            resources: Some(crate::Resources {
                cpu: Some(s.clone()),
                memory: Some(s.clone()),
            }),
            port: Some(rng.random()),
            replicas: Some(rng.random()),
            ttl_hours: Some(rng.random()),
            ..Default::default()
        }
        .validate(&limits);
        let _ = CleanupRequest { preview: s.clone() }.validate(&limits);
    }
}

/// Pieces of repository addresses, in the order an address has them, so that many random
/// ones get past the validator.
const REPO_SCHEMES: &[&str] = &[
    "https://",
    "HTTPS://",
    "ssh://",
    "git+ssh://",
    "git://",
    "http://",
    "",
    "git@",
];
const REPO_HOSTS: &[&str] = &["github.com", "10.0.0.1", "host", "git@host", "a-b.example"];
const REPO_PORTS: &[&str] = &["", "", ":22", ":8443", ":"];
const REPO_SEGMENTS: &[&str] = &[
    "org",
    "app",
    "app.git",
    "app.GIT",
    "x%2egit",
    "%2F",
    "a%40b",
    "u@v",
    "~",
    "a+b",
    "-",
    "_",
    ".",
    "",
    "x.git.git",
    "app#1",
    "a?b",
];

fn random_repository(rng: &mut StdRng) -> String {
    let pick = |rng: &mut StdRng, from: &[&str]| from[rng.random_range(0..from.len())].to_owned();
    let mut url = pick(rng, REPO_SCHEMES) + &pick(rng, REPO_HOSTS) + &pick(rng, REPO_PORTS);
    let separator = if rng.random_range(0..4) == 0 {
        ":"
    } else {
        "/"
    };
    for i in 0..rng.random_range(0..4) {
        url += if i == 0 { separator } else { "/" };
        url += &pick(rng, REPO_SEGMENTS);
    }
    url
}

/// Issue #13, defect 3: whatever the validator accepts, BuildKit reads as an https git remote
/// (never SSH, which needs an agent the build Job does not have, and never "not a git ref").
#[test]
fn accepted_repositories_are_https_git_remotes_for_buildkit() {
    let mut rng = StdRng::seed_from_u64(0x0000_0bcd);
    let limits = Limits::default();
    let mut accepted = 0;
    for _ in 0..20_000 {
        let url = random_repository(&mut rng);
        let Ok(repo) = validate::repository(&url, "repository", &limits) else {
            continue;
        };
        accepted += 1;
        assert_eq!(
            validate::buildkit::git_scheme(&format!("{}#{}", repo.url, "0".repeat(40))),
            if repo.url.ends_with(".git") {
                Ok("https")
            } else {
                Err("not a git ref")
            },
            "{url}"
        );
        let build = BuildRequest {
            repository: url.clone(),
            commit: "0".repeat(40),
            image: "org/app".into(),
            ..Default::default()
        }
        .validate(&limits)
        .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(
            validate::buildkit::git_scheme(&build.git_context()),
            Ok("https"),
            "{url} -> {}",
            build.git_context()
        );
    }
    assert!(
        accepted > 100,
        "only {accepted} accepted: the generator needs work"
    );
}

/// Fragments that assemble into bodies the decoder must survive: valid shapes with wrong
/// types, unknown and repeated keys, deep nesting, truncation.
const JSON_PARTS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"preview\"",
    "\"repository\"",
    "\"commit\"",
    "\"build\"",
    "\"launch\"",
    "\"resources\"",
    "\"cpu\"",
    "\"env\"",
    "\"secrets\"",
    "\"git\"",
    "\"port\"",
    "\"bogus\"",
    "\"A\"",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "\"é\"",
    "1",
    "-1",
    "1e999",
    "0.5",
    "99999999999999999999",
    "true",
    "null",
    "\"x\"",
    "\"\"",
    " ",
    "\n",
];

#[test]
fn random_json_bodies_never_panic() {
    let mut rng = StdRng::seed_from_u64(42);
    let limits = Limits::default();
    for _ in 0..5000 {
        let n = rng.random_range(0..40);
        let body: String = (0..n)
            .map(|_| JSON_PARTS[rng.random_range(0..JSON_PARTS.len())])
            .collect();
        if let Ok(p) = payload::decode::<PipelineRequest>(body.as_bytes()) {
            let _ = p.validate(&limits);
        }
        if let Err(e) = payload::decode::<LaunchRequest>(body.as_bytes()) {
            assert!(!e.code.is_empty() && !e.message.is_empty());
        }
        let _ = payload::decode::<BuildRequest>(body.as_bytes());
        let _ = payload::decode::<CleanupRequest>(body.as_bytes());
    }
    // Deep nesting stops at serde_json's recursion limit instead of overflowing the stack.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(payload::decode::<PipelineRequest>(deep.as_bytes()).is_err());
    let deep_obj = format!(
        r#"{{"preview": "k", "repository": "r", "commit": "c", "build": {}{}}}"#,
        "{\"a\":".repeat(10_000),
        "}".repeat(10_000)
    );
    assert!(payload::decode::<PipelineRequest>(deep_obj.as_bytes()).is_err());
    // Many keys: the culprit search is skipped, the answer is still a 4xx error.
    let many: String = (0..10_000).map(|i| format!(r#""k{i}": 1, "#)).collect();
    let body = format!(r#"{{{many}"preview": "k"}}"#);
    let e = payload::decode::<CleanupRequest>(body.as_bytes()).unwrap_err();
    assert_eq!(e.code, validate::codes::UNKNOWN_FIELD);
    // Invalid UTF-8 is a JSON error, not a panic.
    assert_eq!(
        payload::decode::<CleanupRequest>(b"{\"preview\": \"\xff\"}")
            .unwrap_err()
            .code,
        validate::codes::INVALID_JSON
    );
}
