//! The GitHub App's RS256 JSON Web Token, signed with `ring` (already in the workspace through
//! rustls and kube; constant-time RSA, no OpenSSL or aws-lc). A JWT is three base64url parts, so
//! a JWT crate would add little.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};

/// An App's private key, parsed once. Its Debug never shows key material.
pub(crate) struct AppKey {
    pair: RsaKeyPair,
}

impl std::fmt::Debug for AppKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppKey([redacted])")
    }
}

impl AppKey {
    /// Accepts the PEM GitHub hands out (`BEGIN RSA PRIVATE KEY`, PKCS#1) or a PKCS#8
    /// (`BEGIN PRIVATE KEY`) conversion of it. The error says what is wrong, never the key.
    pub(crate) fn from_pem(pem: &str) -> Result<Self, String> {
        let (label, der) = decode_pem(pem)?;
        let pair = match label.as_str() {
            "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der),
            "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&der),
            other => {
                return Err(format!(
                    "expected an RSA private key, found a PEM {other:?}"
                ));
            }
        }
        .map_err(|e| format!("the RSA private key is not usable: {e}"))?;
        Ok(AppKey { pair })
    }

    /// A JWT for `app_id`, issued 60 s in the past (GitHub's advice against clock drift) and
    /// valid for 9 minutes (GitHub accepts at most 10).
    pub(crate) fn jwt(&self, app_id: u64, now: DateTime<Utc>) -> Result<String, String> {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let iat = now.timestamp() - 60;
        let exp = now.timestamp() + 9 * 60;
        let claims =
            URL_SAFE_NO_PAD.encode(format!(r#"{{"iat":{iat},"exp":{exp},"iss":"{app_id}"}}"#));
        let signing_input = format!("{header}.{claims}");
        let mut sig = vec![0u8; self.pair.public().modulus_len()];
        self.pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut sig,
            )
            .map_err(|_| "signing the app JWT failed".to_owned())?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }
}

fn decode_pem(pem: &str) -> Result<(String, Vec<u8>), String> {
    let mut label = None;
    let mut body = String::new();
    for line in pem.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("-----BEGIN ") {
            label = Some(rest.trim_end_matches('-').to_owned());
        } else if line.starts_with("-----END ") {
            break;
        } else if label.is_some() && !line.contains(':') {
            // Skip legacy `Proc-Type:` style headers; an encrypted key then fails to parse.
            body.push_str(line);
        }
    }
    let label = label.ok_or_else(|| "no PEM block found in the private key".to_owned())?;
    let der = STANDARD
        .decode(body.as_bytes())
        .map_err(|_| "the PEM block is not valid base64".to_owned())?;
    Ok((label, der))
}
