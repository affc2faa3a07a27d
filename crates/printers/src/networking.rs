//! Printers for the `networking.k8s.io` and `discovery.k8s.io` API groups.

use jiff::Timestamp;
use serde_json::Value;

use crate::core::load_balancer_addresses;
use crate::format::{age, array_at, format_label_selector, get, list_with_more, name, opt_int, opt_str, str_at};
use crate::{col, Printer, AGE, NAME};

pub(crate) fn printer(group: &str, kind: &str) -> Option<&'static Printer> {
    Some(match (group, kind) {
        ("networking.k8s.io", "NetworkPolicy") => &NETWORK_POLICY,
        ("networking.k8s.io", "Ingress") => &INGRESS,
        ("networking.k8s.io", "IngressClass") => &INGRESS_CLASS,
        ("networking.k8s.io", "ServiceCIDR") => &SERVICE_CIDR,
        ("networking.k8s.io", "IPAddress") => &IP_ADDRESS,
        ("discovery.k8s.io", "EndpointSlice") => &ENDPOINT_SLICE,
        _ => return None,
    })
}

// === NetworkPolicy ===

static NETWORK_POLICY: Printer = Printer::new(
    &[
        NAME,
        col("Pod-Selector", "string", "podSelector selects the pods to which this NetworkPolicy object applies."),
        AGE,
    ],
    |obj, now| {
        let selector = format_label_selector(get(obj, &["spec", "podSelector"]));
        vec![name(obj), Value::from(selector), age(obj, now)]
    },
);

// === Ingress ===

static INGRESS: Printer = Printer::new(
    &[
        NAME,
        col(
            "Class",
            "string",
            "The name of the IngressClass resource that should be used for additional configuration",
        ),
        col("Hosts", "string", "Hosts that incoming requests are matched against before the ingress rule"),
        col("Address", "string", "Address is a list containing ingress points for the load-balancer"),
        col("Ports", "string", "Ports of TLS configurations that open"),
        AGE,
    ],
    ingress_cells,
);

fn ingress_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let ports = if array_at(obj, &["spec", "tls"]).is_empty() { "80" } else { "80, 443" };
    vec![
        name(obj),
        Value::from(opt_str(obj, &["spec", "ingressClassName"]).unwrap_or("<none>")),
        Value::from(ingress_hosts(array_at(obj, &["spec", "rules"]))),
        Value::from(load_balancer_addresses(obj).join(",")),
        Value::from(ports),
        age(obj, now),
    ]
}

/// The first three rule hosts, `"*"` when no rule names a host.
fn ingress_hosts(rules: &[Value]) -> String {
    const MAX: usize = 3;
    let mut hosts: Vec<&str> = Vec::new();
    let mut more = false;
    for rule in rules {
        // Once three hosts are listed, any further rule (host or not) is "more".
        if hosts.len() == MAX {
            more = true;
        }
        let host = str_at(rule, &["host"]);
        if !more && !host.is_empty() {
            hosts.push(host);
        }
    }
    if hosts.is_empty() {
        return "*".to_string();
    }
    let joined = hosts.join(",");
    if more {
        return format!("{joined} + {} more...", rules.len() - MAX);
    }
    joined
}

// === IngressClass ===

static INGRESS_CLASS: Printer = Printer::new(
    &[
        NAME,
        col("Controller", "string", "Controller that is responsible for handling this class"),
        col("Parameters", "string", "A reference to a resource with additional parameters"),
        AGE,
    ],
    |obj, now| {
        let parameters = match get(obj, &["spec", "parameters"]) {
            None => "<none>".to_string(),
            Some(p) => {
                let kind = str_at(p, &["kind"]);
                let kind = match opt_str(p, &["apiGroup"]) {
                    Some(group) => format!("{kind}.{group}"),
                    None => kind.to_string(),
                };
                format!("{kind}/{}", str_at(p, &["name"]))
            }
        };
        vec![name(obj), Value::from(str_at(obj, &["spec", "controller"])), Value::from(parameters), age(obj, now)]
    },
);

// === ServiceCIDR, IPAddress ===

static SERVICE_CIDR: Printer = Printer::new(
    &[
        NAME,
        col(
            "CIDRs",
            "string",
            "CIDRs defines the IP blocks in CIDR notation from which to assign service cluster IPs.",
        ),
        AGE,
    ],
    |obj, now| {
        let cidrs: Vec<&str> = array_at(obj, &["spec", "cidrs"]).iter().filter_map(Value::as_str).collect();
        vec![name(obj), Value::from(cidrs.join(",")), age(obj, now)]
    },
);

// Upstream also appends an age cell without a matching column; we keep
// cells and columns aligned.
static IP_ADDRESS: Printer = Printer::new(
    &[NAME, col("ParentRef", "string", "ParentRef references the resource that an IPAddress is attached to.")],
    |obj, _now| {
        let parent = match get(obj, &["spec", "parentRef"]) {
            None => "<none>".to_string(),
            Some(r) => {
                let resource = str_at(r, &["resource"]);
                let mut parent = match str_at(r, &["group"]) {
                    "" => resource.to_lowercase(),
                    group => format!("{resource}.{group}").to_lowercase(),
                };
                let namespace = str_at(r, &["namespace"]);
                if !namespace.is_empty() {
                    parent = format!("{parent}/{namespace}");
                }
                format!("{parent}/{}", str_at(r, &["name"]))
            }
        };
        vec![name(obj), Value::from(parent)]
    },
);

// === EndpointSlice ===

static ENDPOINT_SLICE: Printer = Printer::new(
    &[
        NAME,
        col("AddressType", "string", "addressType specifies the type of address carried by this EndpointSlice."),
        col("Ports", "string", "ports specifies the list of network ports exposed by each endpoint in this slice."),
        col("Endpoints", "string", "endpoints is a list of unique endpoints in this slice."),
        AGE,
    ],
    endpoint_slice_cells,
);

fn endpoint_slice_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let ports: Vec<String> = array_at(obj, &["ports"])
        .iter()
        .map(|p| match (opt_int(p, &["port"]), opt_str(p, &["name"])) {
            (Some(port), _) => port.to_string(),
            (None, Some(name)) => name.to_string(),
            (None, None) => "*".to_string(),
        })
        .collect();
    let addresses: Vec<String> = array_at(obj, &["endpoints"])
        .iter()
        .flat_map(|e| array_at(e, &["addresses"]))
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    vec![
        name(obj),
        Value::from(str_at(obj, &["addressType"])),
        Value::from(list_with_more(&ports, 3)),
        Value::from(list_with_more(&addresses, 3)),
        age(obj, now),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::TablePrinter;

    fn now() -> Timestamp {
        "2024-05-01T12:00:00Z".parse().unwrap()
    }

    fn cells(group: &str, kind: &str, obj: &Value) -> Vec<Value> {
        printer(group, kind).unwrap().cells(obj, now())
    }

    #[test]
    fn ingress_lists_hosts_addresses_and_ports() {
        let ing = json!({
            "metadata": {"name": "shop", "creationTimestamp": "2024-05-01T10:00:00Z"},
            "spec": {
                "ingressClassName": "nginx",
                "tls": [{"hosts": ["shop.example.com"], "secretName": "shop-tls"}],
                "rules": [
                    {"host": "shop.example.com"},
                    {"host": "api.example.com"},
                    {},
                    {"host": "admin.example.com"},
                    {"host": "beta.example.com"}
                ]
            },
            "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.20"}, {"hostname": "lb.example.net"}]}}
        });
        assert_eq!(
            cells("networking.k8s.io", "Ingress", &ing),
            [
                json!("shop"),
                json!("nginx"),
                json!("shop.example.com,api.example.com,admin.example.com + 2 more..."),
                json!("203.0.113.20,lb.example.net"),
                json!("80, 443"),
                json!("120m"),
            ]
        );
        let bare = json!({"metadata": {"name": "b"}, "spec": {"rules": [{}]}});
        assert_eq!(
            cells("networking.k8s.io", "Ingress", &bare)[1..5],
            [json!("<none>"), json!("*"), json!(""), json!("80")]
        );
    }

    #[test]
    fn ingress_class_parameters() {
        let class = json!({
            "metadata": {"name": "nginx"},
            "spec": {
                "controller": "k8s.io/ingress-nginx",
                "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "external-lb"}
            }
        });
        assert_eq!(
            cells("networking.k8s.io", "IngressClass", &class)[..3],
            [json!("nginx"), json!("k8s.io/ingress-nginx"), json!("IngressParameters.k8s.example.com/external-lb")]
        );
    }

    #[test]
    fn network_policy_shows_pod_selector() {
        let np = json!({
            "metadata": {"name": "deny-all"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}
        });
        assert_eq!(cells("networking.k8s.io", "NetworkPolicy", &np)[1], json!("<none>"));
        let web = json!({"metadata": {"name": "web"}, "spec": {"podSelector": {"matchLabels": {"app": "web"}}}});
        assert_eq!(cells("networking.k8s.io", "NetworkPolicy", &web)[1], json!("app=web"));
    }

    #[test]
    fn endpoint_slice_ports_and_addresses() {
        let slice = json!({
            "metadata": {"name": "web-abc12"},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "metrics"}],
            "endpoints": [
                {"addresses": ["10.244.1.7"]},
                {"addresses": ["10.244.2.3"]},
                {"addresses": ["10.244.3.9"]},
                {"addresses": ["10.244.4.1"]}
            ]
        });
        assert_eq!(
            cells("discovery.k8s.io", "EndpointSlice", &slice)[..4],
            [
                json!("web-abc12"),
                json!("IPv4"),
                json!("8080,metrics"),
                json!("10.244.1.7,10.244.2.3,10.244.3.9 + 1 more..."),
            ]
        );
        let empty = json!({"metadata": {"name": "e"}, "addressType": "IPv6"});
        assert_eq!(cells("discovery.k8s.io", "EndpointSlice", &empty)[2..4], [json!("<unset>"), json!("<unset>")]);
    }

    #[test]
    fn ip_address_parent_reference() {
        let ip = json!({
            "metadata": {"name": "10.96.0.10"},
            "spec": {"parentRef": {"group": "", "resource": "services", "namespace": "kube-system", "name": "kube-dns"}}
        });
        assert_eq!(
            cells("networking.k8s.io", "IPAddress", &ip),
            [json!("10.96.0.10"), json!("services/kube-system/kube-dns")]
        );
    }
}
