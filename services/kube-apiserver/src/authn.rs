//! Authentication: who is calling. x509 client certificates (CN = user,
//! O = groups) verified by TLS against `--client-ca-file`, bearer tokens from
//! `--token-auth-file`, and anonymous requests when nothing was presented.

use std::collections::{BTreeMap, HashMap};

use rustls::pki_types::CertificateDer;

pub use rbac::UserInfo;

fn anonymous() -> UserInfo {
    UserInfo { name: "system:anonymous".into(), groups: vec!["system:unauthenticated".into()], ..Default::default() }
}

/// Every authenticated user is also in `system:authenticated`.
fn authenticated(mut u: UserInfo) -> UserInfo {
    if !u.groups.iter().any(|g| g == "system:authenticated") {
        u.groups.push("system:authenticated".into());
    }
    u
}

/// Why a request's credentials were refused (401).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthnError {
    #[error("invalid bearer token")]
    InvalidToken,
    #[error("anonymous requests are disabled")]
    AnonymousDisabled,
}

/// Errors loading authenticator configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}:{line}: {message}")]
    Parse { path: String, line: usize, message: String },
}

/// A request's credentials, as found on the connection and in headers.
#[derive(Debug, Default)]
pub struct Credentials<'a> {
    /// The verified client certificate's user, if TLS presented one.
    pub certificate_user: Option<&'a UserInfo>,
    pub bearer_token: Option<&'a str>,
}

/// The union of the configured authenticators.
#[derive(Debug, Default)]
pub struct Authenticator {
    tokens: HashMap<String, UserInfo>,
    pub anonymous_allowed: bool,
}

impl Authenticator {
    pub fn new(token_file: Option<&str>, anonymous_allowed: bool) -> Result<Self, ConfigError> {
        let tokens = match token_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.to_string(), source })?;
                parse_token_file(path, &text)?
            }
            None => HashMap::new(),
        };
        Ok(Authenticator { tokens, anonymous_allowed })
    }

    /// Upstream's union: a presented token must be valid; a verified client
    /// certificate identifies the user; otherwise anonymous.
    pub fn authenticate(&self, creds: &Credentials<'_>) -> Result<UserInfo, AuthnError> {
        if let Some(token) = creds.bearer_token {
            return match self.tokens.get(token) {
                Some(u) => Ok(authenticated(u.clone())),
                None => match creds.certificate_user {
                    Some(u) => Ok(authenticated(u.clone())),
                    None => Err(AuthnError::InvalidToken),
                },
            };
        }
        if let Some(u) = creds.certificate_user {
            return Ok(authenticated(u.clone()));
        }
        if self.anonymous_allowed {
            Ok(anonymous())
        } else {
            Err(AuthnError::AnonymousDisabled)
        }
    }
}

/// Parses upstream's static token file: `token,user,uid[,"group1,group2"]`.
pub fn parse_token_file(path: &str, text: &str) -> Result<HashMap<String, UserInfo>, ConfigError> {
    let mut out = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields = split_csv(line);
        if fields.len() < 3 {
            return Err(ConfigError::Parse {
                path: path.to_string(),
                line: i + 1,
                message: "expected at least 3 columns: token,user,uid".into(),
            });
        }
        let groups = fields
            .get(3)
            .map(|g| g.split(',').map(str::trim).filter(|g| !g.is_empty()).map(String::from).collect())
            .unwrap_or_default();
        out.insert(
            fields[0].clone(),
            UserInfo { name: fields[1].clone(), uid: fields[2].clone(), groups, extra: BTreeMap::new() },
        );
    }
    Ok(out)
}

/// CSV fields with double-quoted values (which may hold commas).
fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur).trim().to_string()),
            c => cur.push(c),
        }
    }
    out.push(cur.trim().to_string());
    out
}

/// The user named by a verified client certificate: CN is the user, each O a group.
pub fn user_from_certificate(cert: &CertificateDer<'_>) -> Option<UserInfo> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let subject = parsed.subject();
    let name = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    let groups = subject.iter_organization().filter_map(|o| o.as_str().ok()).map(String::from).collect::<Vec<_>>();
    Some(UserInfo { name, groups, ..Default::default() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_files_carry_quoted_group_lists() {
        let t = parse_token_file("f", "# comment\nabc,alice,1,\"dev,qa\"\nxyz,bob,2\n").unwrap();
        assert_eq!(t["abc"].name, "alice");
        assert_eq!(t["abc"].groups, vec!["dev", "qa"]);
        assert!(t["xyz"].groups.is_empty());
        assert!(parse_token_file("f", "only,two\n").is_err());
    }

    #[test]
    fn a_bad_token_is_refused_even_when_anonymous_is_allowed() {
        let mut a = Authenticator { anonymous_allowed: true, ..Default::default() };
        a.tokens.insert("good".into(), UserInfo { name: "alice".into(), ..Default::default() });
        let ok = a.authenticate(&Credentials { bearer_token: Some("good"), ..Default::default() }).unwrap();
        assert_eq!(ok.name, "alice");
        assert!(ok.groups.contains(&"system:authenticated".to_string()));
        assert_eq!(
            a.authenticate(&Credentials { bearer_token: Some("bad"), ..Default::default() }),
            Err(AuthnError::InvalidToken)
        );
        assert_eq!(a.authenticate(&Credentials::default()).unwrap(), anonymous());
    }
}

/// What an `Impersonate-*` request asks to become.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Impersonation {
    pub user: String,
    pub uid: Option<String>,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// Reads the impersonation headers; `None` when the request impersonates nobody.
pub fn impersonation(headers: &http::HeaderMap) -> Option<Impersonation> {
    let values = |name: &str| -> Vec<String> {
        headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).map(|v| v.to_string()).collect()
    };
    let user = values("Impersonate-User").into_iter().next()?;
    let mut extra = BTreeMap::new();
    for (name, value) in headers {
        if let Some(key) = name.as_str().strip_prefix("impersonate-extra-") {
            let key = percent_encoding::percent_decode_str(key).decode_utf8_lossy().into_owned();
            if let Ok(v) = value.to_str() {
                extra.entry(key).or_insert_with(Vec::new).push(v.to_string());
            }
        }
    }
    Some(Impersonation {
        user,
        uid: values("Impersonate-Uid").into_iter().next(),
        groups: values("Impersonate-Group"),
        extra,
    })
}

/// The user an allowed impersonation becomes: service accounts get their
/// groups, everyone but anonymous gets `system:authenticated`.
pub fn impersonated_user(i: &Impersonation) -> UserInfo {
    let mut groups = i.groups.clone();
    if let Some(rest) = i.user.strip_prefix("system:serviceaccount:") {
        if let Some((ns, _)) = rest.split_once(':') {
            for g in ["system:serviceaccounts".to_string(), format!("system:serviceaccounts:{ns}")] {
                if !groups.contains(&g) {
                    groups.push(g);
                }
            }
        }
    }
    let user =
        UserInfo { name: i.user.clone(), uid: i.uid.clone().unwrap_or_default(), groups, extra: i.extra.clone() };
    if i.user == "system:anonymous" {
        user
    } else {
        authenticated(user)
    }
}
