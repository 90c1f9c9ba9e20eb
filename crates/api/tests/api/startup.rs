//! Configuration errors stop the real binary at start-up with a message that names the
//! variable, the entry and the rule it breaks, never the secret itself.

use std::process::Command;

/// Runs `slipway-api` with only `env` (plus a database URL it never reaches: configuration is
/// checked first) and returns its exit status and stderr.
fn start_with(env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_slipway-api"));
    c.env_clear()
        .env(
            "SLIPWAY_DATABASE_URL",
            "postgres://postgres@127.0.0.1:1/none",
        )
        .env("SLIPWAY_LISTEN", "127.0.0.1:0");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("run slipway-api");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_short_token_names_the_variable_the_entry_and_the_rule() {
    let ok = "reader-token-long-enough";
    let short = "short-tok";
    let (status, stderr) = start_with(&[(
        "SLIPWAY_API_TOKENS",
        &format!("ops:read:{ok},ci:enqueue:{short}"),
    )]);
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "SLIPWAY_API_TOKENS: entry 2 (\"ci:enqueue:…\"): the token is 9 characters, \
             at least 16 are required"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains(short) && !stderr.contains(ok), "{stderr}");
}

#[test]
fn malformed_token_entries_never_echo_the_secret() {
    let secret = "SUPERSECRETVALUE123";
    for (tokens, expected) in [
        (
            format!("ci:{secret}"),
            "SLIPWAY_API_TOKENS: entry 1 (\"…\"): the entry has 2 `:`-separated fields",
        ),
        (
            format!("ci:raed:{secret}"),
            "SLIPWAY_API_TOKENS: entry 1 (\"ci:…\"): unknown scope",
        ),
        (
            format!("ci:read:sha256:{secret}"),
            "SLIPWAY_API_TOKENS: entry 1 (\"ci:read:…\"): a sha256: token must be followed by 64 hex digits",
        ),
        (
            format!("a:read:{secret},a:admin:{secret}x"),
            "SLIPWAY_API_TOKENS: entry 2 (\"a:admin:…\"): the name is used by an earlier entry",
        ),
    ] {
        let (status, stderr) = start_with(&[("SLIPWAY_API_TOKENS", &tokens)]);
        assert!(!status.success(), "{tokens}: {stderr}");
        assert!(stderr.contains(expected), "{tokens}: {stderr}");
        assert!(!stderr.contains(secret), "{tokens}: {stderr}");
    }
}

#[test]
fn limits_and_github_settings_name_their_variables() {
    let cases = [
        (
            vec![("SLIPWAY_MAX_CPU", "lots")],
            "SLIPWAY_MAX_CPU (--max-cpu): \"lots\" is not a Kubernetes quantity",
        ),
        (
            vec![("SLIPWAY_MAX_MEMORY", "0")],
            "SLIPWAY_MAX_MEMORY (--max-memory): \"0\" must be greater than zero",
        ),
        (
            vec![("SLIPWAY_GITHUB_APP_ID", "12")],
            "SLIPWAY_GITHUB_APP_ID is set but SLIPWAY_GITHUB_PRIVATE_KEY_FILE is not",
        ),
        (
            vec![("SLIPWAY_GITHUB_PRIVATE_KEY_FILE", "/nonexistent/key.pem")],
            "SLIPWAY_GITHUB_PRIVATE_KEY_FILE is set but SLIPWAY_GITHUB_APP_ID is not",
        ),
    ];
    for (env, expected) in cases {
        let (status, stderr) = start_with(&env);
        assert!(!status.success(), "{env:?}: {stderr}");
        assert!(stderr.contains(expected), "{env:?}: {stderr}");
    }
}

#[test]
fn a_bad_value_from_the_environment_names_its_variable() {
    let (status, stderr) = start_with(&[("SLIPWAY_MAX_ATTEMPTS", "lots")]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("invalid value 'lots' for SLIPWAY_MAX_ATTEMPTS (--max-attempts):"),
        "{stderr}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_slipway-api"))
        .env_clear()
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("SLIPWAY_DATABASE_URL (or --database-url <DATABASE_URL>)"),
        "{stderr}"
    );
}
