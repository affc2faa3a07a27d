//! Client-certificate kubeconfigs: one cluster, one user, one context, with the CA, certificate
//! and key embedded as base64 (`certificate-authority-data`, `client-certificate-data`,
//! `client-key-data`), as kubeadm writes them.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Why a file is not a kubeconfig this module can read.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("not a kubeconfig")]
    Yaml(#[from] serde_yaml::Error),
    #[error("current-context {0:?} names no context with a cluster and user")]
    NoCurrentContext(String),
    #[error("{0} is not base64 of PEM text")]
    Data(&'static str),
}

/// The one cluster and user a component's kubeconfig holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    pub cluster_name: String,
    /// `https://host:port`.
    pub server: String,
    pub ca_pem: String,
    pub user: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl ClientConfig {
    /// The context's name, as kubeadm forms it: `<user>@<cluster>`.
    pub fn context_name(&self) -> String {
        format!("{}@{}", self.user, self.cluster_name)
    }

    pub fn to_yaml(&self) -> String {
        let context = self.context_name();
        let config = Kubeconfig {
            api_version: "v1".into(),
            clusters: vec![NamedCluster {
                name: self.cluster_name.clone(),
                cluster: Cluster {
                    certificate_authority_data: BASE64.encode(&self.ca_pem),
                    server: self.server.clone(),
                },
            }],
            contexts: vec![NamedContext {
                name: context.clone(),
                context: Context { cluster: self.cluster_name.clone(), user: self.user.clone() },
            }],
            current_context: context,
            kind: "Config".into(),
            preferences: serde_yaml::Mapping::new(),
            users: vec![NamedUser {
                name: self.user.clone(),
                user: User {
                    client_certificate_data: BASE64.encode(&self.cert_pem),
                    client_key_data: BASE64.encode(&self.key_pem),
                },
            }],
        };
        // A tree of strings, sequences and an empty mapping always serializes.
        serde_yaml::to_string(&config).expect("kubeconfig serializes")
    }

    /// The current context's cluster and user. Fields this module does not write are ignored.
    pub fn from_yaml(text: &str) -> Result<Self, KubeconfigError> {
        let config: Kubeconfig = serde_yaml::from_str(text)?;
        let missing = || KubeconfigError::NoCurrentContext(config.current_context.clone());
        let context = config.contexts.iter().find(|c| c.name == config.current_context).ok_or_else(missing)?;
        let cluster = config.clusters.iter().find(|c| c.name == context.context.cluster).ok_or_else(missing)?;
        let user = config.users.iter().find(|u| u.name == context.context.user).ok_or_else(missing)?;
        Ok(ClientConfig {
            cluster_name: cluster.name.clone(),
            server: cluster.cluster.server.clone(),
            ca_pem: decode(&cluster.cluster.certificate_authority_data, "certificate-authority-data")?,
            user: user.name.clone(),
            cert_pem: decode(&user.user.client_certificate_data, "client-certificate-data")?,
            key_pem: decode(&user.user.client_key_data, "client-key-data")?,
        })
    }
}

fn decode(data: &str, field: &'static str) -> Result<String, KubeconfigError> {
    let bytes = BASE64.decode(data.trim()).map_err(|_| KubeconfigError::Data(field))?;
    String::from_utf8(bytes).map_err(|_| KubeconfigError::Data(field))
}

// The wire shape, fields in the order kubectl writes them.

#[derive(Debug, Default, Serialize, Deserialize)]
struct Kubeconfig {
    #[serde(rename = "apiVersion", default)]
    api_version: String,
    #[serde(default)]
    clusters: Vec<NamedCluster>,
    #[serde(default)]
    contexts: Vec<NamedContext>,
    #[serde(rename = "current-context", default)]
    current_context: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    preferences: serde_yaml::Mapping,
    #[serde(default)]
    users: Vec<NamedUser>,
}

#[derive(Debug, Serialize, Deserialize)]
struct NamedCluster {
    cluster: Cluster,
    name: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Cluster {
    #[serde(rename = "certificate-authority-data", default)]
    certificate_authority_data: String,
    #[serde(default)]
    server: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct NamedContext {
    context: Context,
    name: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Context {
    cluster: String,
    user: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct NamedUser {
    name: String,
    user: User,
}

#[derive(Debug, Serialize, Deserialize)]
struct User {
    #[serde(rename = "client-certificate-data", default)]
    client_certificate_data: String,
    #[serde(rename = "client-key-data", default)]
    client_key_data: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin() -> ClientConfig {
        ClientConfig {
            cluster_name: "kubernetes".into(),
            server: "https://10.0.0.5:6443".into(),
            ca_pem: "-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n".into(),
            user: "kubernetes-admin".into(),
            cert_pem: "-----BEGIN CERTIFICATE-----\nleaf\n-----END CERTIFICATE-----\n".into(),
            key_pem: "-----BEGIN PRIVATE KEY-----\nkey\n-----END PRIVATE KEY-----\n".into(),
        }
    }

    #[test]
    fn a_written_kubeconfig_reads_back_the_same() {
        let yaml = admin().to_yaml();
        assert_eq!(ClientConfig::from_yaml(&yaml).unwrap(), admin());
    }

    #[test]
    fn the_yaml_has_kubectls_shape() {
        let value: serde_yaml::Value = serde_yaml::from_str(&admin().to_yaml()).unwrap();
        assert_eq!(value["apiVersion"], "v1");
        assert_eq!(value["kind"], "Config");
        assert_eq!(value["current-context"], "kubernetes-admin@kubernetes");
        assert_eq!(value["contexts"][0]["context"]["cluster"], "kubernetes");
        assert_eq!(value["clusters"][0]["cluster"]["server"], "https://10.0.0.5:6443");
        let ca = value["clusters"][0]["cluster"]["certificate-authority-data"].as_str().unwrap();
        assert_eq!(BASE64.decode(ca).unwrap(), admin().ca_pem.as_bytes());
        let user = &value["users"][0]["user"];
        assert!(user["client-certificate-data"].is_string());
        assert!(user["client-key-data"].is_string());
    }

    #[test]
    fn the_current_context_picks_cluster_and_user() {
        let mut value: serde_yaml::Value = serde_yaml::from_str(&admin().to_yaml()).unwrap();
        value["current-context"] = "elsewhere".into();
        let text = serde_yaml::to_string(&value).unwrap();
        assert!(
            matches!(ClientConfig::from_yaml(&text), Err(KubeconfigError::NoCurrentContext(c)) if c == "elsewhere")
        );

        assert!(matches!(ClientConfig::from_yaml("- not\n- a map\n"), Err(KubeconfigError::Yaml(_))));
    }
}
