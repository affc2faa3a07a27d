//! Message descriptors of the built-in Kubernetes types, read from the embedded
//! `FileDescriptorSet` (see `descriptors/README.md`), plus the few facts about
//! their JSON form that the descriptors do not carry.

use std::collections::HashMap;
use std::io::Read;
use std::sync::OnceLock;

use crate::wire::{Reader, WireError, WireValue};

/// Upstream's descriptors for every `generated.proto` of one Kubernetes release.
const DESCRIPTOR_SET: &[u8] = include_bytes!("../descriptors/kubernetes-v1.33.pb.gz");

/// API group → proto package prefix (the version is appended).
const GROUP_PACKAGES: &[(&str, &str)] = &[
    ("", "k8s.io.api.core"),
    ("admission.k8s.io", "k8s.io.api.admission"),
    ("admissionregistration.k8s.io", "k8s.io.api.admissionregistration"),
    ("apidiscovery.k8s.io", "k8s.io.api.apidiscovery"),
    ("apps", "k8s.io.api.apps"),
    ("authentication.k8s.io", "k8s.io.api.authentication"),
    ("authorization.k8s.io", "k8s.io.api.authorization"),
    ("autoscaling", "k8s.io.api.autoscaling"),
    ("batch", "k8s.io.api.batch"),
    ("certificates.k8s.io", "k8s.io.api.certificates"),
    ("coordination.k8s.io", "k8s.io.api.coordination"),
    ("discovery.k8s.io", "k8s.io.api.discovery"),
    ("events.k8s.io", "k8s.io.api.events"),
    ("extensions", "k8s.io.api.extensions"),
    ("flowcontrol.apiserver.k8s.io", "k8s.io.api.flowcontrol"),
    ("imagepolicy.k8s.io", "k8s.io.api.imagepolicy"),
    ("internal.apiserver.k8s.io", "k8s.io.api.apiserverinternal"),
    ("meta.k8s.io", "k8s.io.apimachinery.pkg.apis.meta"),
    ("metrics.k8s.io", "k8s.io.metrics.pkg.apis.metrics"),
    ("networking.k8s.io", "k8s.io.api.networking"),
    ("node.k8s.io", "k8s.io.api.node"),
    ("policy", "k8s.io.api.policy"),
    ("rbac.authorization.k8s.io", "k8s.io.api.rbac"),
    ("resource.k8s.io", "k8s.io.api.resource"),
    ("scheduling.k8s.io", "k8s.io.api.scheduling"),
    ("storage.k8s.io", "k8s.io.api.storage"),
    ("storagemigration.k8s.io", "k8s.io.api.storagemigration"),
];

const META_V1: &str = "k8s.io.apimachinery.pkg.apis.meta.v1";

/// Kinds that upstream registers in every group version (`metav1.AddToGroupVersion`)
/// or serves unversioned; they live in meta/v1 whatever apiVersion names them.
const META_KINDS: &[&str] = &[
    "APIGroup",
    "APIGroupList",
    "APIResourceList",
    "APIVersions",
    "CreateOptions",
    "DeleteOptions",
    "GetOptions",
    "ListOptions",
    "PatchOptions",
    "Status",
    "UpdateOptions",
    "WatchEvent",
];

/// Go fields embedded with `json:",inline"`: their proto field is a nested
/// message, but in JSON its fields sit in the parent object.
/// (message name, proto field name), matched in every group and version.
pub(crate) const INLINE_FIELDS: &[(&str, &str)] = &[
    ("ConfigMapEnvSource", "localObjectReference"),
    ("ConfigMapKeySelector", "localObjectReference"),
    ("ConfigMapProjection", "localObjectReference"),
    ("ConfigMapVolumeSource", "localObjectReference"),
    ("DeviceAllocationConfiguration", "deviceConfiguration"),
    ("DeviceClaimConfiguration", "deviceConfiguration"),
    ("DeviceClassConfiguration", "deviceConfiguration"),
    ("EphemeralContainer", "ephemeralContainerCommon"),
    ("IngressRule", "ingressRuleValue"),
    ("NamedRuleWithOperations", "ruleWithOperations"),
    ("PersistentVolumeSpec", "persistentVolumeSource"),
    ("Probe", "handler"),
    ("RuleWithOperations", "rule"),
    ("SecretEnvSource", "localObjectReference"),
    ("SecretKeySelector", "localObjectReference"),
    ("SecretProjection", "localObjectReference"),
    ("Volume", "volumeSource"),
];

/// Proto field names that differ from the JSON name. Everywhere else upstream
/// names the proto field after the JSON key (`DaemonEndpoint.Port` really is
/// `"Port"` in JSON).
const RENAMED_FIELDS: &[(&str, &str)] = &[
    ("Expression", "expression"),
    ("Name", "name"),
    ("Webhooks", "webhooks"),
    ("aPIGroup", "apiGroup"),
    ("uID", "uid"),
];

/// Messages whose JSON form is not an object with one key per field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Special {
    /// meta/v1 Time: `{seconds, nanos}` ⇄ RFC 3339 string, whole seconds.
    Time,
    /// meta/v1 MicroTime: `{seconds, nanos}` ⇄ RFC 3339 string, microseconds.
    MicroTime,
    /// meta/v1 Duration: `{duration}` nanoseconds ⇄ Go duration string.
    Duration,
    /// resource.Quantity: `{string}` ⇄ string.
    Quantity,
    /// intstr.IntOrString: `{type, intVal, strVal}` ⇄ number or string.
    IntOrString,
    /// runtime.RawExtension: `{raw}` ⇄ the embedded JSON value.
    RawExtension,
    /// meta/v1 FieldsV1: `{Raw}` ⇄ the embedded JSON value.
    FieldsV1,
    /// A named `[]string` (meta/v1 Verbs, the ExtraValues): `{items}` ⇄ array.
    StringList,
}

impl Special {
    fn by_name(full_name: &str) -> Option<Self> {
        let (package, name) = full_name.rsplit_once('.')?;
        Some(match (package, name) {
            (META_V1, "Time") => Self::Time,
            (META_V1, "MicroTime") => Self::MicroTime,
            (META_V1, "Duration") => Self::Duration,
            (META_V1, "FieldsV1") => Self::FieldsV1,
            ("k8s.io.apimachinery.pkg.api.resource", "Quantity" | "QuantityValue") => Self::Quantity,
            ("k8s.io.apimachinery.pkg.util.intstr", "IntOrString") => Self::IntOrString,
            ("k8s.io.apimachinery.pkg.runtime", "RawExtension") => Self::RawExtension,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct MessageId(usize);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// A JSON object keyed by the fields' JSON names.
    Object,
    /// The synthetic entry message of a `map<K, V>` field: key 1, value 2.
    MapEntry,
    Special(Special),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Type {
    Double,
    Float,
    Int64,
    Uint64,
    Int32,
    Fixed64,
    Fixed32,
    Bool,
    String,
    Bytes,
    Uint32,
    Enum,
    Sfixed32,
    Sfixed64,
    Sint32,
    Sint64,
    Message(MessageId),
}

#[derive(Debug, Clone)]
pub(crate) struct Field {
    pub(crate) json_name: String,
    pub(crate) number: u32,
    pub(crate) repeated: bool,
    pub(crate) packed: bool,
    /// gogoproto `nullable`: false for Go value (non-pointer) fields, whose zero
    /// value cannot be told from unset.
    pub(crate) nullable: bool,
    pub(crate) inline: bool,
    pub(crate) ty: Type,
}

#[derive(Debug, Clone)]
pub(crate) struct Message {
    pub(crate) full_name: String,
    pub(crate) shape: Shape,
    /// Sorted by field number.
    pub(crate) fields: Vec<Field>,
}

impl Message {
    pub(crate) fn field(&self, number: u32) -> Option<(usize, &Field)> {
        let index = self.fields.binary_search_by_key(&number, |f| f.number).ok()?;
        Some((index, &self.fields[index]))
    }
}

#[derive(Debug)]
pub(crate) struct Registry {
    messages: Vec<Message>,
    by_name: HashMap<String, MessageId>,
}

/// The registry built from the embedded descriptors, parsed on first use.
pub(crate) fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut set = Vec::new();
        flate2::read::GzDecoder::new(DESCRIPTOR_SET)
            .read_to_end(&mut set)
            .expect("embedded descriptor set is valid gzip");
        Registry::from_descriptor_set(&set).expect("embedded descriptor set is valid")
    })
}

impl Registry {
    pub(crate) fn message(&self, id: MessageId) -> &Message {
        &self.messages[id.0]
    }

    pub(crate) fn by_name(&self, full_name: &str) -> Option<MessageId> {
        self.by_name.get(full_name).copied()
    }

    /// The message that encodes objects of `apiVersion`/`kind`.
    pub(crate) fn for_kind(&self, api_version: &str, kind: &str) -> Option<MessageId> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let &(_, package) = GROUP_PACKAGES.iter().find(|(g, _)| *g == group)?;
        if version.is_empty() || kind.is_empty() {
            return None;
        }
        let id = self
            .by_name(&format!("{package}.{version}.{kind}"))
            .or_else(|| META_KINDS.contains(&kind).then(|| self.by_name(&format!("{META_V1}.{kind}"))).flatten())?;
        (self.message(id).shape == Shape::Object).then_some(id)
    }

    #[cfg(test)]
    pub(crate) fn messages(&self) -> impl Iterator<Item = &Message> {
        self.messages.iter()
    }

    pub(crate) fn from_descriptor_set(set: &[u8]) -> Result<Self, WireError> {
        let mut raw = Vec::new();
        let mut reader = Reader::new(set);
        while let Some((number, value)) = reader.field()? {
            if let (1, WireValue::Bytes(file)) = (number, value) {
                read_file(file, &mut raw)?;
            }
        }
        let by_name: HashMap<String, MessageId> =
            raw.iter().enumerate().map(|(i, m)| (m.full_name.clone(), MessageId(i))).collect();
        let mut messages = Vec::with_capacity(raw.len());
        for message in raw {
            let short_name = message.full_name.rsplit('.').next().unwrap_or_default();
            let mut fields = Vec::with_capacity(message.fields.len());
            for f in &message.fields {
                let ty = match f.ty {
                    1 => Type::Double,
                    2 => Type::Float,
                    3 => Type::Int64,
                    4 => Type::Uint64,
                    5 => Type::Int32,
                    6 => Type::Fixed64,
                    7 => Type::Fixed32,
                    8 => Type::Bool,
                    9 => Type::String,
                    11 => Type::Message(
                        *by_name
                            .get(f.type_name.trim_start_matches('.'))
                            .ok_or(WireError("field refers to an unknown message"))?,
                    ),
                    12 => Type::Bytes,
                    13 => Type::Uint32,
                    14 => Type::Enum,
                    15 => Type::Sfixed32,
                    16 => Type::Sfixed64,
                    17 => Type::Sint32,
                    18 => Type::Sint64,
                    _ => return Err(WireError("unsupported field type")),
                };
                let json_name = RENAMED_FIELDS
                    .iter()
                    .find(|(proto, _)| *proto == f.name)
                    .map_or(f.name.as_str(), |(_, json)| json)
                    .to_owned();
                let inline = INLINE_FIELDS.iter().any(|&(m, name)| m == short_name && name == f.name);
                fields.push(Field {
                    json_name,
                    number: f.number,
                    repeated: f.label == 3,
                    packed: f.packed,
                    nullable: f.nullable,
                    inline,
                    ty,
                });
            }
            fields.sort_by_key(|f| f.number);
            let shape = if message.map_entry {
                Shape::MapEntry
            } else if let Some(special) = Special::by_name(&message.full_name) {
                Shape::Special(special)
            } else if is_string_list(&message.fields) {
                Shape::Special(Special::StringList)
            } else {
                Shape::Object
            };
            messages.push(Message { full_name: message.full_name, shape, fields });
        }
        Ok(Self { messages, by_name })
    }
}

/// `message X { repeated string items = 1; }`: Go's named string slices.
fn is_string_list(fields: &[RawField]) -> bool {
    matches!(fields, [f] if f.name == "items" && f.number == 1 && f.label == 3 && f.ty == 9)
}

struct RawMessage {
    full_name: String,
    map_entry: bool,
    fields: Vec<RawField>,
}

struct RawField {
    name: String,
    number: u32,
    label: u64,
    ty: u64,
    type_name: String,
    packed: bool,
    nullable: bool,
}

fn string(bytes: &[u8]) -> Result<String, WireError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| WireError("descriptor name is not UTF-8"))
}

/// google.protobuf.FileDescriptorProto: 2 package, 4 message_type.
fn read_file(file: &[u8], out: &mut Vec<RawMessage>) -> Result<(), WireError> {
    let mut package = String::new();
    let mut bodies = Vec::new();
    let mut reader = Reader::new(file);
    while let Some((number, value)) = reader.field()? {
        match (number, value) {
            (2, WireValue::Bytes(b)) => package = string(b)?,
            (4, WireValue::Bytes(b)) => bodies.push(b),
            _ => {}
        }
    }
    for body in bodies {
        read_message(&package, body, out)?;
    }
    Ok(())
}

/// google.protobuf.DescriptorProto: 1 name, 2 field, 3 nested_type, 7 options.
fn read_message(scope: &str, body: &[u8], out: &mut Vec<RawMessage>) -> Result<(), WireError> {
    let mut message = RawMessage { full_name: String::new(), map_entry: false, fields: Vec::new() };
    let mut nested = Vec::new();
    let mut reader = Reader::new(body);
    while let Some((number, value)) = reader.field()? {
        match (number, value) {
            (1, WireValue::Bytes(b)) => message.full_name = format!("{scope}.{}", string(b)?),
            (2, WireValue::Bytes(b)) => message.fields.push(read_field(b)?),
            (3, WireValue::Bytes(b)) => nested.push(b),
            // MessageOptions: 7 map_entry.
            (7, WireValue::Bytes(b)) => {
                let mut options = Reader::new(b);
                while let Some((number, value)) = options.field()? {
                    if let (7, WireValue::Varint(v)) = (number, value) {
                        message.map_entry = v != 0;
                    }
                }
            }
            _ => {}
        }
    }
    let scope = message.full_name.clone();
    out.push(message);
    for body in nested {
        read_message(&scope, body, out)?;
    }
    Ok(())
}

/// google.protobuf.FieldDescriptorProto: 1 name, 3 number, 4 label, 5 type,
/// 6 type_name, 8 options (2 packed, 65001 gogoproto.nullable).
fn read_field(body: &[u8]) -> Result<RawField, WireError> {
    let mut field = RawField {
        name: String::new(),
        number: 0,
        label: 1,
        ty: 0,
        type_name: String::new(),
        packed: false,
        nullable: true,
    };
    let mut reader = Reader::new(body);
    while let Some((number, value)) = reader.field()? {
        match (number, value) {
            (1, WireValue::Bytes(b)) => field.name = string(b)?,
            (3, WireValue::Varint(v)) => field.number = u32::try_from(v).map_err(|_| WireError("bad field number"))?,
            (4, WireValue::Varint(v)) => field.label = v,
            (5, WireValue::Varint(v)) => field.ty = v,
            (6, WireValue::Bytes(b)) => field.type_name = string(b)?,
            (8, WireValue::Bytes(b)) => {
                let mut options = Reader::new(b);
                while let Some((number, value)) = options.field()? {
                    match (number, value) {
                        (2, WireValue::Varint(v)) => field.packed = v != 0,
                        (65001, WireValue::Varint(v)) => field.nullable = v != 0,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(field)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field<'r>(reg: &'r Registry, message: &str, json_name: &str) -> &'r Field {
        let id = reg.by_name(message).unwrap_or_else(|| panic!("{message}"));
        reg.message(id)
            .fields
            .iter()
            .find(|f| f.json_name == json_name)
            .unwrap_or_else(|| panic!("{message}.{json_name}"))
    }

    #[test]
    fn embedded_descriptors_cover_the_built_in_groups() {
        let reg = registry();
        for (api_version, kind) in [
            ("v1", "Pod"),
            ("v1", "ConfigMap"),
            ("v1", "Status"),
            ("v1", "List"),
            ("apps/v1", "Deployment"),
            ("apps/v1", "DeploymentList"),
            ("apps/v1", "DeleteOptions"),
            ("batch/v1", "CronJob"),
            ("autoscaling/v1", "HorizontalPodAutoscaler"),
            ("autoscaling/v2", "HorizontalPodAutoscaler"),
            ("coordination.k8s.io/v1", "Lease"),
            ("discovery.k8s.io/v1", "EndpointSlice"),
            ("events.k8s.io/v1", "Event"),
            ("networking.k8s.io/v1", "NetworkPolicy"),
            ("policy/v1", "PodDisruptionBudget"),
            ("scheduling.k8s.io/v1", "PriorityClass"),
            ("storage.k8s.io/v1", "StorageClass"),
            ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
            ("authentication.k8s.io/v1", "TokenRequest"),
            ("authentication.k8s.io/v1", "SelfSubjectReview"),
            ("authorization.k8s.io/v1", "SelfSubjectAccessReview"),
            ("meta.k8s.io/v1", "PartialObjectMetadataList"),
            ("flowcontrol.apiserver.k8s.io/v1", "FlowSchema"),
            ("internal.apiserver.k8s.io/v1alpha1", "StorageVersion"),
            ("metrics.k8s.io/v1beta1", "PodMetrics"),
        ] {
            assert!(reg.for_kind(api_version, kind).is_some(), "{api_version} {kind}");
        }
        assert!(reg.for_kind("v1", "Time").is_none());
        assert!(reg.for_kind("v1", "Nope").is_none());
        assert!(reg.for_kind("example.com/v1", "Pod").is_none());
        assert!(reg.for_kind("apps.example.com/v1", "Deployment").is_none());
    }

    #[test]
    fn every_api_package_has_a_group() {
        for message in registry().messages() {
            if let Some(rest) = message.full_name.strip_prefix("k8s.io.api.") {
                let package = format!("k8s.io.api.{}", rest.split('.').next().unwrap());
                assert!(GROUP_PACKAGES.iter().any(|(_, p)| *p == package), "{package} has no API group");
            }
        }
    }

    #[test]
    fn inline_and_renamed_fields_exist() {
        let reg = registry();
        for &(message, field) in INLINE_FIELDS {
            assert!(
                reg.messages().any(|m| m.full_name.ends_with(&format!(".{message}"))
                    && m.fields.iter().any(|f| f.inline && f.json_name == field)),
                "{message}.{field} matches nothing"
            );
        }
        let probe = field(reg, "k8s.io.api.core.v1.Probe", "handler");
        assert!(probe.inline);
        let webhooks = field(reg, "k8s.io.api.admissionregistration.v1.ValidatingWebhookConfiguration", "webhooks");
        assert!(webhooks.repeated);
    }

    #[test]
    fn gogo_nullable_tells_pointers_from_values() {
        let reg = registry();
        assert!(field(reg, "k8s.io.api.apps.v1.DeploymentSpec", "replicas").nullable);
        assert!(!field(reg, "k8s.io.api.apps.v1.DeploymentSpec", "minReadySeconds").nullable);
        assert!(!field(reg, "k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta", "name").nullable);
    }

    #[test]
    fn special_messages_are_recognised() {
        let reg = registry();
        let shape = |name: &str| reg.message(reg.by_name(name).unwrap()).shape;
        assert_eq!(shape("k8s.io.apimachinery.pkg.apis.meta.v1.Time"), Shape::Special(Special::Time));
        assert_eq!(shape("k8s.io.apimachinery.pkg.apis.meta.v1.Verbs"), Shape::Special(Special::StringList));
        assert_eq!(shape("k8s.io.api.authentication.v1.ExtraValue"), Shape::Special(Special::StringList));
        assert_eq!(shape("k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta.LabelsEntry"), Shape::MapEntry);
        assert_eq!(shape("k8s.io.api.core.v1.DownwardAPIProjection"), Shape::Object);
    }
}
