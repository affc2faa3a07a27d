//! Protobuf message bytes → JSON.

use base64::Engine as _;
use serde_json::{Map, Number, Value};

use crate::path::Path;
use crate::registry::{MessageId, Registry, Shape, Special, Type};
use crate::special;
use crate::wire::{Reader, WireError, WireValue};
use crate::{Error, MAGIC, MAX_DEPTH};

pub(crate) struct Decoder<'r> {
    pub(crate) reg: &'r Registry,
}

/// What has been read for one field of a message so far.
enum Slot<'a> {
    Empty,
    /// A singular scalar: the last occurrence wins.
    Scalar(WireValue<'a>),
    /// A singular message: occurrences merge, as if their bytes were concatenated.
    Message(Vec<&'a [u8]>),
    List(Vec<Value>),
    Map(Map<String, Value>),
}

impl Slot<'_> {
    fn list(&mut self) -> &mut Vec<Value> {
        if !matches!(self, Slot::List(_)) {
            *self = Slot::List(Vec::new());
        }
        match self {
            Slot::List(list) => list,
            _ => unreachable!("just made a list"),
        }
    }

    fn map(&mut self) -> &mut Map<String, Value> {
        if !matches!(self, Slot::Map(_)) {
            *self = Slot::Map(Map::new());
        }
        match self {
            Slot::Map(map) => map,
            _ => unreachable!("just made a map"),
        }
    }
}

impl<'r> Decoder<'r> {
    /// Decodes the message `id` as a JSON object (for objects, not special types).
    pub(crate) fn object(&self, id: MessageId, bytes: &[u8], path: &Path<'_>) -> Result<Map<String, Value>, Error> {
        if path.depth() > MAX_DEPTH {
            return Err(Error::TooDeep { path: path.to_string() });
        }
        let message = self.reg.message(id);
        let mut slots: Vec<Slot<'_>> = message.fields.iter().map(|_| Slot::Empty).collect();
        let malformed = |e: WireError| Error::malformed(path, e.0);
        let mut reader = Reader::new(bytes);
        while let Some((number, value)) = reader.field().map_err(malformed)? {
            let Some((index, field)) = message.field(number) else {
                continue; // Unknown fields are dropped, as upstream does.
            };
            let path = path.field(&field.json_name);
            let slot = &mut slots[index];
            match field.ty {
                Type::Message(item) if field.repeated => {
                    let WireValue::Bytes(bytes) = value else {
                        return Err(Error::malformed(&path, "expected a length-delimited field"));
                    };
                    if self.reg.message(item).shape == Shape::MapEntry {
                        let (key, value) = self.map_entry(item, bytes, &path)?;
                        slot.map().insert(key, value);
                    } else {
                        let list = slot.list();
                        let path = path.index(list.len());
                        let item = self.message_value(item, bytes, &path)?;
                        list.push(item.unwrap_or(Value::Null));
                    }
                }
                Type::Message(_) => {
                    let WireValue::Bytes(bytes) = value else {
                        return Err(Error::malformed(&path, "expected a length-delimited field"));
                    };
                    match slot {
                        Slot::Message(parts) => parts.push(bytes),
                        _ => *slot = Slot::Message(vec![bytes]),
                    }
                }
                ty if field.repeated => {
                    let list = slot.list();
                    match value {
                        WireValue::Bytes(packed) if ty.is_packable() => {
                            let mut packed = Reader::new(packed);
                            while !packed.is_empty() {
                                let item = packed_item(ty, &mut packed).map_err(malformed)?;
                                list.push(scalar(ty, item).map_err(|e| Error::malformed(&path, e))?);
                            }
                        }
                        _ => list.push(scalar(ty, value).map_err(|e| Error::malformed(&path, e))?),
                    }
                }
                _ => *slot = Slot::Scalar(value),
            }
        }

        let mut object = Map::new();
        for (field, slot) in message.fields.iter().zip(slots) {
            let parent = path;
            let path = path.field(&field.json_name);
            let value = match slot {
                Slot::Empty => continue,
                Slot::List(list) => Value::Array(list),
                Slot::Map(map) => Value::Object(map),
                Slot::Scalar(value) => {
                    let value = scalar(field.ty, value).map_err(|e| Error::malformed(&path, e))?;
                    if !field.nullable && is_zero(&value) {
                        continue;
                    }
                    value
                }
                Slot::Message(parts) => {
                    let Type::Message(id) = field.ty else { unreachable!("message slot for a scalar field") };
                    let joined;
                    let bytes = match parts.as_slice() {
                        [one] => *one,
                        _ => {
                            joined = parts.concat();
                            &joined
                        }
                    };
                    if field.inline {
                        // The nested message's fields are the parent's in JSON.
                        object.extend(self.object(id, bytes, parent)?);
                        continue;
                    }
                    match self.message_value(id, bytes, &path)? {
                        Some(value) => value,
                        None => continue,
                    }
                }
            };
            object.insert(field.json_name.clone(), value);
        }
        Ok(object)
    }

    /// A message in JSON; `None` where Go would write `null` (zero times, absent raw JSON).
    fn message_value(&self, id: MessageId, bytes: &[u8], path: &Path<'_>) -> Result<Option<Value>, Error> {
        match self.reg.message(id).shape {
            Shape::Special(special) => self.special(special, bytes, path),
            Shape::Object | Shape::MapEntry => Ok(Some(Value::Object(self.object(id, bytes, path)?))),
        }
    }

    /// One `map<K, V>` entry: the key as a JSON object key and the value.
    fn map_entry(&self, entry: MessageId, bytes: &[u8], path: &Path<'_>) -> Result<(String, Value), Error> {
        let message = self.reg.message(entry);
        let (Some((_, key_field)), Some((_, value_field))) = (message.field(1), message.field(2)) else {
            return Err(Error::malformed(path, format!("{} has no key and value fields", message.full_name)));
        };
        let malformed = |e: WireError| Error::malformed(path, e.0);
        let mut key = None;
        let mut value = None;
        let mut value_parts = Vec::new();
        let mut reader = Reader::new(bytes);
        while let Some((number, wire)) = reader.field().map_err(malformed)? {
            match number {
                1 => key = Some(wire),
                2 if matches!(value_field.ty, Type::Message(_)) => match wire {
                    WireValue::Bytes(b) => value_parts.push(b),
                    _ => return Err(Error::malformed(path, "expected a length-delimited value")),
                },
                2 => value = Some(wire),
                _ => {}
            }
        }
        let key = match key {
            Some(wire) => scalar(key_field.ty, wire).map_err(|e| Error::malformed(path, e))?,
            None => zero(key_field.ty),
        };
        let key = match key {
            Value::String(s) => s,
            other => other.to_string(),
        };
        let path = path.key(&key);
        let value = match value_field.ty {
            Type::Message(id) => self.message_value(id, &value_parts.concat(), &path)?.unwrap_or(Value::Null),
            ty => match value {
                Some(wire) => scalar(ty, wire).map_err(|e| Error::malformed(&path, e))?,
                None => zero(ty),
            },
        };
        Ok((key, value))
    }

    fn special(&self, special: Special, bytes: &[u8], path: &Path<'_>) -> Result<Option<Value>, Error> {
        let fields = SpecialFields::read(bytes).map_err(|e| Error::malformed(path, e.0))?;
        let invalid = |reason: String| Error::invalid(path, reason);
        Ok(match special {
            // An empty Time is Go's zero time, which its JSON writes as null.
            Special::Time if bytes.is_empty() => None,
            Special::Time => Some(special::format_time(fields.int(1)).map_err(invalid)?.into()),
            Special::MicroTime if bytes.is_empty() => None,
            Special::MicroTime => {
                Some(special::format_micro_time(fields.int(1), fields.int(2) as i32).map_err(invalid)?.into())
            }
            Special::Duration => Some(special::format_duration(fields.int(1)).into()),
            Special::Quantity => {
                let text = fields.text(1, path)?;
                Some(if text.is_empty() { "0" } else { text }.into())
            }
            Special::IntOrString => {
                Some(if fields.int(1) == 1 { fields.text(3, path)?.into() } else { (fields.int(2) as i32).into() })
            }
            Special::RawExtension | Special::FieldsV1 => match fields.bytes(1) {
                [] => None,
                raw if raw.starts_with(MAGIC) => Some(crate::decode_envelope(raw, path)?),
                raw => Some(
                    serde_json::from_slice(raw).map_err(|e| invalid(format!("embedded object is not JSON: {e}")))?,
                ),
            },
            Special::StringList => {
                let mut items = Vec::new();
                for wire in fields.all(1) {
                    items.push(scalar(Type::String, wire).map_err(|e| Error::malformed(path, e))?);
                }
                Some(Value::Array(items))
            }
        })
    }
}

/// The fields of a small special message, by number.
struct SpecialFields<'a> {
    fields: Vec<(u32, WireValue<'a>)>,
}

impl<'a> SpecialFields<'a> {
    fn read(bytes: &'a [u8]) -> Result<Self, WireError> {
        let mut fields = Vec::new();
        let mut reader = Reader::new(bytes);
        while let Some(field) = reader.field()? {
            fields.push(field);
        }
        Ok(Self { fields })
    }

    fn all(&self, number: u32) -> impl Iterator<Item = WireValue<'a>> + '_ {
        self.fields.iter().filter(move |(n, _)| *n == number).map(|(_, v)| *v)
    }

    fn last(&self, number: u32) -> Option<WireValue<'a>> {
        self.all(number).last()
    }

    fn int(&self, number: u32) -> i64 {
        match self.last(number) {
            Some(WireValue::Varint(v)) => v as i64,
            _ => 0,
        }
    }

    fn bytes(&self, number: u32) -> &'a [u8] {
        match self.last(number) {
            Some(WireValue::Bytes(b)) => b,
            _ => &[],
        }
    }

    fn text(&self, number: u32, path: &Path<'_>) -> Result<&'a str, Error> {
        std::str::from_utf8(self.bytes(number)).map_err(|_| Error::malformed(path, "string is not UTF-8"))
    }
}

impl Type {
    fn is_packable(self) -> bool {
        !matches!(self, Type::String | Type::Bytes | Type::Message(_))
    }
}

fn packed_item<'a>(ty: Type, reader: &mut Reader<'a>) -> Result<WireValue<'a>, WireError> {
    Ok(match ty {
        Type::Fixed32 | Type::Sfixed32 | Type::Float => WireValue::Fixed32(reader.fixed32()?),
        Type::Fixed64 | Type::Sfixed64 | Type::Double => WireValue::Fixed64(reader.fixed64()?),
        _ => WireValue::Varint(reader.varint()?),
    })
}

/// A scalar field's value in JSON.
fn scalar(ty: Type, value: WireValue<'_>) -> Result<Value, String> {
    let float = |f: f64| Number::from_f64(f).map(Value::Number).ok_or_else(|| format!("{f} has no JSON form"));
    Ok(match (ty, value) {
        (Type::Int32 | Type::Enum, WireValue::Varint(v)) => (v as i32).into(),
        (Type::Int64, WireValue::Varint(v)) => (v as i64).into(),
        (Type::Uint32, WireValue::Varint(v)) => (v as u32).into(),
        (Type::Uint64, WireValue::Varint(v)) => v.into(),
        (Type::Sint32, WireValue::Varint(v)) => (((v as u32) >> 1) as i32 ^ -((v & 1) as i32)).into(),
        (Type::Sint64, WireValue::Varint(v)) => ((v >> 1) as i64 ^ -((v & 1) as i64)).into(),
        (Type::Bool, WireValue::Varint(v)) => (v != 0).into(),
        (Type::Fixed32, WireValue::Fixed32(v)) => v.into(),
        (Type::Sfixed32, WireValue::Fixed32(v)) => (v as i32).into(),
        (Type::Float, WireValue::Fixed32(v)) => float(f64::from(f32::from_bits(v)))?,
        (Type::Fixed64, WireValue::Fixed64(v)) => v.into(),
        (Type::Sfixed64, WireValue::Fixed64(v)) => (v as i64).into(),
        (Type::Double, WireValue::Fixed64(v)) => float(f64::from_bits(v))?,
        (Type::String, WireValue::Bytes(b)) => {
            std::str::from_utf8(b).map_err(|_| "string is not UTF-8".to_owned())?.into()
        }
        (Type::Bytes, WireValue::Bytes(b)) => base64::engine::general_purpose::STANDARD.encode(b).into(),
        (ty, value) => {
            let wire = match value {
                WireValue::Varint(_) => "varint",
                WireValue::Fixed64(_) => "64-bit",
                WireValue::Bytes(_) => "length-delimited",
                WireValue::Fixed32(_) => "32-bit",
            };
            return Err(format!("a {wire} value does not fit a {ty:?} field"));
        }
    })
}

/// The zero value of a scalar type, for map entries that leave out key or value.
fn zero(ty: Type) -> Value {
    match ty {
        Type::Bool => false.into(),
        Type::String | Type::Bytes => "".into(),
        Type::Double | Type::Float => 0.0.into(),
        Type::Message(_) => Value::Null,
        _ => 0.into(),
    }
}

fn is_zero(value: &Value) -> bool {
    match value {
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    }
}
