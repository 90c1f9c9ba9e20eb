//! What may reach GitHub. A pull request's comments are public on public repositories, so
//! every piece of dynamic text passes through here first: tokens and passwords are redacted,
//! internal hosts and URLs (`*.svc`, `*.cluster.local`, private IPs, `localhost`) are hidden,
//! stack traces and raw Kubernetes API errors are replaced by a pointer to the full log.

use std::net::Ipv4Addr;
use std::sync::LazyLock;

use regex::{Captures, Regex};

const REDACTED: &str = "[redacted]";
const INTERNAL_URL: &str = "[internal URL]";
const INTERNAL_HOST: &str = "[internal host]";
const K8S_ERROR: &str = "a Kubernetes API error (details in the full log)";
const STACK_TRACE: &str = "[stack trace removed]";

fn re(pattern: &str) -> Regex {
    // The patterns are constants of this file, compiled by the tests on every run.
    Regex::new(pattern).unwrap_or_else(|e| panic!("invalid built-in pattern {pattern}: {e}"))
}

static TOKENS: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    vec![
        // GitHub tokens: classic/OAuth/user-to-server/server-to-server/refresh, fine-grained.
        re(r"\bgh[pousr]_[A-Za-z0-9]{16,}"),
        re(r"\bgithub_pat_[A-Za-z0-9_]{20,}"),
        // JWTs (a GitHub App's, a Kubernetes service account's).
        re(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
        re(r"\bAKIA[0-9A-Z]{16}\b"),
        re(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----|$)"),
    ]
});

static SCHEME_CREDENTIALS: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)\b(bearer|basic|token)(\s+)[A-Za-z0-9._~+/=-]{6,}"));

static KEY_VALUE_SECRETS: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r#"(?i)\b([a-z_]*(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|authorization)[a-z_]*)(["']?\s*[:=]\s*["']?)[^\s"',;&]+"#,
    )
});

static URL_USERINFO: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@:]*:[^/\s@]*@"));

static URLS: LazyLock<Regex> = LazyLock::new(|| re(r#"(?i)\b[a-z][a-z0-9+.-]*://[^\s<>"'`)\]]+"#));

static HOSTS: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::[0-9]{1,5})?",
    )
});

static K8S: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    vec![
        re(r#""kind"\s*:\s*"Status""#),
        re(
            r#"(?i)\b(pods?|deployments?(\.apps)?|namespaces?|services?|ingresses(\.networking\.k8s\.io)?|jobs?(\.batch)?|secrets?|configmaps?|resourcequotas?|serviceaccounts?|persistentvolumeclaims?|replicasets?(\.apps)?)\s+"[^"]*"\s+(is forbidden|already exists|not found|is invalid)"#,
        ),
        re(r"(?i)admission webhook .* denied"),
        re(r"(?i)\b(kube-apiserver|apiserver|ApiError|Internal error occurred)\b"),
        re(r"(?i)\bthe server (could not find|rejected|has asked|was unable)"),
        re(
            r"(?i)\bunable to (create|get|patch|delete|watch|list) .*: .*\b(forbidden|not found|conflict)\b",
        ),
    ]
});

static TRACE_START: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)^\s*(stack backtrace:|traceback \(most recent call last\):|thread '.*' panicked at|goroutine \d+ \[|Exception in thread|caused by:\s*$)",
    )
});

static TRACE_FRAME: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r#"^\s*(at\s+\S+|\d+:\s+(0x[0-9a-f]+|[\w:<>$]+)|File ".*", line \d+|\S+\.go:\d+|\S+\.rs:\d+:\d+|note: run with `RUST_BACKTRACE)"#,
    )
});

/// Cleans free text (an error message, a step name) for GitHub.
pub fn sanitize(text: &str) -> String {
    let text = strip_traces_and_k8s(text);
    let text = URLS.replace_all(&text, |c: &Captures<'_>| clean_url(&c[0]));
    let text = redact_secrets(&text);
    let text = HOSTS.replace_all(&text, |c: &Captures<'_>| {
        let token = &c[0];
        let host = token.rsplit_once(':').map_or(token, |(h, _)| h);
        if is_internal_host(host) {
            INTERNAL_HOST.to_owned()
        } else {
            token.to_owned()
        }
    });
    text.trim().to_owned()
}

/// A URL in free text: hidden if its host is internal, its credentials redacted otherwise
/// (secrets in its query are left to the token patterns).
fn clean_url(raw: &str) -> String {
    let Ok(mut u) = url::Url::parse(raw) else {
        return raw.to_owned();
    };
    if u.host().is_some_and(|h| is_internal(&h)) {
        return INTERNAL_URL.to_owned();
    }
    if !u.username().is_empty() || u.password().is_some() {
        let _ = u.set_username("");
        let _ = u.set_password(None);
        return u.to_string().replacen("://", &format!("://{REDACTED}@"), 1);
    }
    raw.to_owned()
}

fn is_internal(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => is_internal_host(d),
        url::Host::Ipv4(ip) => is_internal_ipv4(*ip),
        url::Host::Ipv6(ip) => {
            ip.is_loopback()
                || ip.is_unspecified()
                || (ip.segments()[0] & 0xfe00) == 0xfc00
                || (ip.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// `url` if it may be shown on GitHub: `http(s)`, no credentials, a public host. `None` else.
pub fn safe_url(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    if !matches!(parsed.scheme(), "http" | "https")
        || !parsed.username().is_empty()
        || parsed.password().is_some()
    {
        return None;
    }
    if is_internal(&parsed.host()?) {
        return None;
    }
    // A token in the query string is still a token.
    let mut s = parsed.to_string();
    if redact_secrets(&s) != s {
        return None;
    }
    // Keep the URL as given when parsing only added the root path's slash.
    if !url.ends_with('/') && s.strip_suffix('/') == Some(url) {
        s.pop();
    }
    Some(s)
}

/// Cuts `s` to at most `max` characters, marking the cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn redact_secrets(text: &str) -> String {
    let mut out = text.to_owned();
    for r in TOKENS.iter() {
        out = r.replace_all(&out, REDACTED).into_owned();
    }
    out = URL_USERINFO
        .replace_all(&out, format!("${{1}}{REDACTED}@"))
        .into_owned();
    out = SCHEME_CREDENTIALS
        .replace_all(&out, format!("${{1}}${{2}}{REDACTED}"))
        .into_owned();
    KEY_VALUE_SECRETS
        .replace_all(&out, |c: &Captures<'_>| {
            if c[0].ends_with(REDACTED) {
                c[0].to_owned()
            } else {
                format!("{}{}{REDACTED}", &c[1], &c[2])
            }
        })
        .into_owned()
}

/// Replaces stack traces and raw Kubernetes API errors, line by line.
fn strip_traces_and_k8s(text: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let mut in_trace = false;
    for line in text.lines() {
        if K8S.iter().any(|r| r.is_match(line)) {
            if out.last() != Some(&K8S_ERROR) {
                out.push(K8S_ERROR);
            }
            in_trace = false;
            continue;
        }
        if TRACE_START.is_match(line) || TRACE_FRAME.is_match(line) {
            if !in_trace && out.last() != Some(&STACK_TRACE) {
                out.push(STACK_TRACE);
            }
            in_trace = true;
            continue;
        }
        // A trace's indented context lines belong to it; a flush-left line ends it.
        if in_trace && (line.starts_with(' ') || line.starts_with('\t')) {
            continue;
        }
        in_trace = false;
        out.push(line);
    }
    out.join("\n")
}

fn is_internal_host(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    if let Ok(ip) = h.parse::<Ipv4Addr>() {
        return is_internal_ipv4(ip);
    }
    h == "localhost"
        || h.starts_with("kubernetes.default")
        || [
            ".localhost",
            ".svc",
            ".cluster.local",
            ".local",
            ".internal",
            ".localdomain",
            ".lan",
        ]
        .iter()
        .any(|s| h.ends_with(s))
        || h.contains(".svc.")
}

fn is_internal_ipv4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        // Carrier-grade NAT, used by some clusters' pod networks.
        || (o[0] == 100 && (64..128).contains(&o[1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_compile() {
        LazyLock::force(&TOKENS);
        LazyLock::force(&K8S);
        let _ = sanitize("x");
    }

    #[test]
    fn tokens_are_redacted() {
        let cases = [
            "push failed: ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "using ghs_16CharactersOrMoreXYZ",
            "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
            "Authorization: Bearer abc.def-ghi_jkl",
            "password=hunter22 in env",
            "REGISTRY_TOKEN: s3cr3tvalue",
            "clone https://x-access-token:ghs_zzzzzzzzzzzzzzzzzzzz@github.com/o/r.git",
            "postgres://slipway:pa55word@db.example.com/slipway",
        ];
        for c in cases {
            let s = sanitize(c);
            for secret in [
                "ghp_abc",
                "ghs_",
                "github_pat_",
                "abc.def",
                "hunter22",
                "s3cr3t",
                "pa55word",
            ] {
                assert!(!s.contains(secret), "{c:?} -> {s:?}");
            }
            assert!(s.contains(REDACTED), "{c:?} -> {s:?}");
        }
    }

    #[test]
    fn internal_hosts_are_hidden_public_kept() {
        let s = sanitize(
            "cannot reach http://registry.slipway.svc.cluster.local:5000/v2/ or redis.slipway.svc:6379 \
             or 10.96.0.1 or 192.168.49.2:8443 or localhost:8080; see https://slipway.example.com/v1/jobs/1/logs",
        );
        for bad in ["svc", "10.96", "192.168", "localhost"] {
            assert!(!s.contains(bad), "{s}");
        }
        assert!(
            s.contains("https://slipway.example.com/v1/jobs/1/logs"),
            "{s}"
        );
        // minikube's preview hosts embed the node IP in a public wildcard DNS name.
        let s = sanitize("ready at http://pr-42-app.192.168.49.2.nip.io/");
        assert!(s.contains("pr-42-app.192.168.49.2.nip.io"), "{s}");
        assert_eq!(safe_url("http://10.0.0.1/x"), None);
        assert_eq!(safe_url("http://[::1]:80/"), None);
        assert_eq!(safe_url("https://u:p@example.com/"), None);
        assert_eq!(safe_url("https://example.com/?token=abcdefgh"), None);
        assert!(safe_url("https://example.com/logs").is_some());
    }

    #[test]
    fn traces_and_kubernetes_errors_are_replaced() {
        let s = sanitize(
            "build failed\nthread 'main' panicked at src/main.rs:10:5:\nboom\nstack backtrace:\n   0: rust_begin_unwind\n   1: core::panicking::panic_fmt\nafter",
        );
        assert!(!s.contains("rust_begin_unwind"), "{s}");
        assert!(!s.contains("panic_fmt"), "{s}");
        assert!(s.contains(STACK_TRACE) && s.contains("after"), "{s}");
        let s = sanitize(
            r#"namespaces "slipway-pv-app-42" is forbidden: User "system:serviceaccount:slipway:worker" cannot create resource"#,
        );
        assert_eq!(s, K8S_ERROR);
        let s = sanitize(
            r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"x","code":500}"#,
        );
        assert_eq!(s, K8S_ERROR);
    }

    #[test]
    fn truncation() {
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
    }
}
