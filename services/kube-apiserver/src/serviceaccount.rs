//! Service-account tokens: ES256 JWTs signed with the key from
//! `--service-account-signing-key-file`, verified with the keys from
//! `--service-account-key-file`, bound to a service account (and optionally a
//! pod) by uid, with audiences and an expiry.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, UnparsedPublicKey};
use serde_json::{json, Value};

use crate::authn::UserInfo;

/// Errors loading keys or issuing tokens.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("signing the token failed")]
    Sign,
}

/// Why a presented token is not a valid service-account token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("not a JWT")]
    Malformed,
    #[error("signature does not verify")]
    Signature,
    #[error("token has expired")]
    Expired,
    #[error("token is not yet valid")]
    NotYetValid,
    #[error("token issuer is not accepted")]
    Issuer,
    #[error("token audiences are not accepted")]
    Audience,
}

/// Reads the first PEM block of a file as DER.
fn pem_der(path: &str, text: &str) -> Result<Vec<u8>, KeyError> {
    let body: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .map_err(|e| KeyError::Invalid { path: path.to_string(), message: format!("bad PEM: {e}") })
}

fn read(path: &str) -> Result<String, KeyError> {
    std::fs::read_to_string(path).map_err(|source| KeyError::Read { path: path.to_string(), source })
}

/// The key id upstream-style: base64url of the SHA-256 of the public key DER.
fn key_id(public_der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, public_der).as_ref())
}

/// Issues tokens.
pub struct TokenSigner {
    key: EcdsaKeyPair,
    kid: String,
    pub issuer: String,
    rng: SystemRandom,
}

/// The claims of a new token.
#[derive(Clone, Debug, Default)]
pub struct TokenClaims {
    pub namespace: String,
    pub service_account: String,
    pub service_account_uid: String,
    pub audiences: Vec<String>,
    pub expiration_seconds: i64,
    /// (kind, name, uid) of a bound Pod or Secret.
    pub bound_object: Option<(String, String, String)>,
    pub node: Option<(String, String)>,
}

impl TokenSigner {
    /// Loads a PKCS#8 P-256 private key (kube-pki's `sa.key`).
    pub fn from_file(path: &str, issuer: &str) -> Result<Self, KeyError> {
        let der = pem_der(path, &read(path)?)?;
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng).map_err(|e| {
            KeyError::Invalid { path: path.to_string(), message: format!("not a P-256 PKCS#8 key: {e}") }
        })?;
        let kid = key_id(key.public_key().as_ref());
        Ok(TokenSigner { key, kid, issuer: issuer.to_string(), rng })
    }

    /// Signs a token; returns it and its expiry (seconds since the epoch).
    pub fn issue(&self, c: &TokenClaims, now: i64) -> Result<(String, i64), KeyError> {
        let exp = now + c.expiration_seconds;
        let mut k8s = json!({
            "namespace": c.namespace,
            "serviceaccount": {"name": c.service_account, "uid": c.service_account_uid},
        });
        if let Some((kind, name, uid)) = &c.bound_object {
            k8s[kind.to_lowercase()] = json!({"name": name, "uid": uid});
        }
        if let Some((name, uid)) = &c.node {
            k8s["node"] = json!({"name": name, "uid": uid});
        }
        let claims = json!({
            "iss": self.issuer,
            "sub": format!("system:serviceaccount:{}:{}", c.namespace, c.service_account),
            "aud": c.audiences,
            "exp": exp,
            "iat": now,
            "nbf": now,
            "jti": uuid::Uuid::new_v4().to_string(),
            "kubernetes.io": k8s,
        });
        let header = json!({"alg": "ES256", "kid": self.kid});
        let signing_input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let sig = self.key.sign(&self.rng, signing_input.as_bytes()).map_err(|_| KeyError::Sign)?;
        Ok((format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref())), exp))
    }
}

/// Verifies tokens against one or more public keys.
#[derive(Default)]
pub struct TokenVerifier {
    keys: Vec<Vec<u8>>,
    pub issuers: Vec<String>,
    pub audiences: Vec<String>,
}

/// What a verified token says, before the bound objects are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub bound: Option<(String, String, String)>,
    pub node: Option<(String, String)>,
}

impl TokenVerifier {
    /// Loads SPKI (`PUBLIC KEY`) PEM files, or the public half of PKCS#8 private keys.
    pub fn from_files(paths: &[String], issuers: Vec<String>, audiences: Vec<String>) -> Result<Self, KeyError> {
        let mut keys = Vec::new();
        for path in paths {
            let text = read(path)?;
            let der = pem_der(path, &text)?;
            if text.contains("PRIVATE KEY") {
                let key =
                    EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &der, &SystemRandom::new())
                        .map_err(|e| KeyError::Invalid { path: path.clone(), message: e.to_string() })?;
                keys.push(key.public_key().as_ref().to_vec());
            } else {
                use x509_parser::prelude::FromDer;
                let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&der)
                    .map_err(|e| KeyError::Invalid { path: path.clone(), message: e.to_string() })?;
                keys.push(spki.subject_public_key.data.to_vec());
            }
        }
        Ok(TokenVerifier { keys, issuers, audiences })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether a bearer token looks like a JWT this verifier should judge.
    pub fn looks_like_jwt(token: &str) -> bool {
        token.split('.').count() == 3 && token.starts_with("eyJ")
    }

    /// Verifies a token for this apiserver's own audiences (`--api-audiences`).
    pub fn verify(&self, token: &str, now: i64) -> Result<VerifiedToken, TokenError> {
        self.verify_for(token, now, &self.audiences).map(|(t, _)| t)
    }

    /// Verifies a token for `audiences` (a TokenReview's `spec.audiences`); also returns those of them the
    /// token is for.
    pub fn verify_for(
        &self,
        token: &str,
        now: i64,
        audiences: &[String],
    ) -> Result<(VerifiedToken, Vec<String>), TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(TokenError::Malformed);
        };
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).map_err(|_| TokenError::Malformed)?)
            .map_err(|_| TokenError::Malformed)?;
        if header["alg"] != "ES256" {
            return Err(TokenError::Signature);
        }
        let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| TokenError::Malformed)?;
        let signing_input = &token[..h.len() + 1 + c.len()];
        let ok = self.keys.iter().any(|k| {
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, k)
                .verify(signing_input.as_bytes(), &sig)
                .is_ok()
        });
        if !ok {
            return Err(TokenError::Signature);
        }
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(c).map_err(|_| TokenError::Malformed)?)
            .map_err(|_| TokenError::Malformed)?;
        if claims["exp"].as_i64().is_none_or(|e| e <= now) {
            return Err(TokenError::Expired);
        }
        if claims["nbf"].as_i64().is_some_and(|n| n > now + 60) {
            return Err(TokenError::NotYetValid);
        }
        if !self.issuers.iter().any(|i| claims["iss"] == *i) {
            return Err(TokenError::Issuer);
        }
        let auds: Vec<&str> = match &claims["aud"] {
            Value::String(a) => vec![a.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let matched: Vec<String> = audiences.iter().filter(|x| auds.contains(&x.as_str())).cloned().collect();
        if matched.is_empty() {
            return Err(TokenError::Audience);
        }
        let k = &claims["kubernetes.io"];
        let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let bound = ["pod", "secret"].iter().find_map(|kind| {
            k.get(*kind)
                .map(|o| (if *kind == "pod" { "Pod" } else { "Secret" }.to_string(), s(&o["name"]), s(&o["uid"])))
        });
        let node = k.get("node").map(|n| (s(&n["name"]), s(&n["uid"])));
        let verified = VerifiedToken {
            namespace: s(&k["namespace"]),
            name: s(&k["serviceaccount"]["name"]),
            uid: s(&k["serviceaccount"]["uid"]),
            bound,
            node,
        };
        Ok((verified, matched))
    }
}

/// The user a verified token authenticates as.
pub fn user_for(t: &VerifiedToken) -> UserInfo {
    let mut extra = BTreeMap::new();
    if let Some((kind, name, uid)) = &t.bound {
        if kind == "Pod" {
            extra.insert("authentication.kubernetes.io/pod-name".to_string(), vec![name.clone()]);
            extra.insert("authentication.kubernetes.io/pod-uid".to_string(), vec![uid.clone()]);
        }
    }
    if let Some((name, uid)) = &t.node {
        extra.insert("authentication.kubernetes.io/node-name".to_string(), vec![name.clone()]);
        extra.insert("authentication.kubernetes.io/node-uid".to_string(), vec![uid.clone()]);
    }
    UserInfo {
        name: format!("system:serviceaccount:{}:{}", t.namespace, t.name),
        uid: t.uid.clone(),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{}", t.namespace),
            "system:authenticated".into(),
        ],
        extra,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keypair(dir: &std::path::Path) -> String {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref())
        );
        let path = dir.join(format!("k{}.key", uuid::Uuid::new_v4()));
        std::fs::write(&path, pem).unwrap();
        path.display().to_string()
    }

    fn claims() -> TokenClaims {
        TokenClaims {
            namespace: "ns".into(),
            service_account: "sa".into(),
            service_account_uid: "u1".into(),
            audiences: vec!["api".into()],
            expiration_seconds: 600,
            bound_object: Some(("Pod".into(), "p".into(), "pu".into())),
            node: None,
        }
    }

    #[test]
    fn issued_tokens_verify_and_name_their_service_account_and_pod() {
        let dir = tempfile::tempdir().unwrap();
        let key = keypair(dir.path());
        let signer = TokenSigner::from_file(&key, "https://iss").unwrap();
        let (token, exp) = signer.issue(&claims(), 1000).unwrap();
        assert_eq!(exp, 1600);
        let v = TokenVerifier::from_files(&[key], vec!["https://iss".into()], vec!["api".into()]).unwrap();
        let t = v.verify(&token, 1001).unwrap();
        assert_eq!((t.namespace.as_str(), t.name.as_str(), t.uid.as_str()), ("ns", "sa", "u1"));
        assert_eq!(t.bound, Some(("Pod".into(), "p".into(), "pu".into())));
        let u = user_for(&t);
        assert_eq!(u.name, "system:serviceaccount:ns:sa");
        assert!(u.groups.contains(&"system:serviceaccounts:ns".to_string()));
    }

    #[test]
    fn expired_foreign_and_wrong_audience_tokens_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = keypair(dir.path());
        let other = keypair(dir.path());
        let signer = TokenSigner::from_file(&key, "https://iss").unwrap();
        let foreign = TokenSigner::from_file(&other, "https://iss").unwrap();
        let v = TokenVerifier::from_files(&[key], vec!["https://iss".into()], vec!["api".into()]).unwrap();
        let (token, _) = signer.issue(&claims(), 1000).unwrap();
        assert_eq!(v.verify(&token, 1600), Err(TokenError::Expired));
        let (forged, _) = foreign.issue(&claims(), 1000).unwrap();
        assert_eq!(v.verify(&forged, 1001), Err(TokenError::Signature));
        let mut c = claims();
        c.audiences = vec!["elsewhere".into()];
        let (aud, _) = signer.issue(&c, 1000).unwrap();
        assert_eq!(v.verify(&aud, 1001), Err(TokenError::Audience));
        // Reviewed for the audience it was issued for, it is valid, and says for which.
        let elsewhere = vec!["x".to_string(), "elsewhere".to_string()];
        assert_eq!(v.verify_for(&aud, 1001, &elsewhere).map(|(_, a)| a), Ok(vec!["elsewhere".to_string()]));
        assert_eq!(v.verify_for(&token, 1001, &elsewhere).map(|(_, a)| a), Err(TokenError::Audience));
        assert_eq!(v.verify("a.b", 1001), Err(TokenError::Malformed));
    }
}
