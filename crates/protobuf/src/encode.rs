//! JSON → protobuf message bytes.

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::path::Path;
use crate::registry::{MessageId, Registry, Shape, Special, Type};
use crate::special;
use crate::wire::{put_bytes, put_key, put_varint, FIXED32, FIXED64, LEN, VARINT};
use crate::{Error, MAX_DEPTH};

pub(crate) struct Encoder<'r> {
    pub(crate) reg: &'r Registry,
}

impl<'r> Encoder<'r> {
    /// The bytes of message `id` holding `value`: an object, or the JSON form of a
    /// special type. `null` is the empty message.
    pub(crate) fn message(&self, id: MessageId, value: &Value, path: &Path<'_>) -> Result<Vec<u8>, Error> {
        if path.depth() > MAX_DEPTH {
            return Err(Error::TooDeep { path: path.to_string() });
        }
        let mut out = Vec::new();
        if value.is_null() {
            return Ok(out);
        }
        match self.reg.message(id).shape {
            Shape::Special(special) => self.special(special, value, path, &mut out)?,
            Shape::Object | Shape::MapEntry => self.fields(id, expect_object(value, path)?, path, &mut out)?,
        }
        Ok(out)
    }

    fn fields(
        &self,
        id: MessageId,
        object: &Map<String, Value>,
        path: &Path<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        for field in &self.reg.message(id).fields {
            if field.inline {
                if let Type::Message(inner) = field.ty {
                    let mut nested = Vec::new();
                    self.fields(inner, object, path, &mut nested)?;
                    if !nested.is_empty() {
                        put_bytes(out, field.number, &nested);
                    }
                }
                continue;
            }
            let Some(value) = object.get(&field.json_name).filter(|v| !v.is_null()) else {
                continue;
            };
            let path = path.field(&field.json_name);
            match field.ty {
                Type::Message(entry) if field.repeated && self.reg.message(entry).shape == Shape::MapEntry => {
                    for (key, value) in expect_object(value, &path)? {
                        let path = path.key(key);
                        let bytes = self.map_entry(entry, key, value, &path)?;
                        put_bytes(out, field.number, &bytes);
                    }
                }
                Type::Message(item) if field.repeated => {
                    for (i, value) in expect_array(value, &path)?.iter().enumerate() {
                        let bytes = self.message(item, value, &path.index(i))?;
                        put_bytes(out, field.number, &bytes);
                    }
                }
                Type::Message(id) => {
                    let bytes = self.message(id, value, &path)?;
                    put_bytes(out, field.number, &bytes);
                }
                ty if field.repeated && field.packed && ty.wire_type() != LEN => {
                    let mut packed = Vec::new();
                    for (i, value) in expect_array(value, &path)?.iter().enumerate() {
                        put_scalar(&mut packed, ty, value, &path.index(i))?;
                    }
                    put_bytes(out, field.number, &packed);
                }
                ty if field.repeated => {
                    for (i, value) in expect_array(value, &path)?.iter().enumerate() {
                        put_key(out, field.number, ty.wire_type());
                        put_scalar(out, ty, value, &path.index(i))?;
                    }
                }
                ty => {
                    put_key(out, field.number, ty.wire_type());
                    put_scalar(out, ty, value, &path)?;
                }
            }
        }
        Ok(())
    }

    fn map_entry(&self, entry: MessageId, key: &str, value: &Value, path: &Path<'_>) -> Result<Vec<u8>, Error> {
        let message = self.reg.message(entry);
        let (Some((_, key_field)), Some((_, value_field))) = (message.field(1), message.field(2)) else {
            return Err(Error::invalid(path, format!("{} has no key and value fields", message.full_name)));
        };
        let key = match key_field.ty {
            Type::String => Value::String(key.to_owned()),
            Type::Bool => {
                key.parse::<bool>().map(Value::Bool).map_err(|_| Error::invalid(path, "map key is not a bool"))?
            }
            _ => serde_json::from_str(key).map_err(|_| Error::invalid(path, "map key is not a number"))?,
        };
        let mut out = Vec::new();
        put_key(&mut out, 1, key_field.ty.wire_type());
        put_scalar(&mut out, key_field.ty, &key, path)?;
        match value_field.ty {
            Type::Message(id) => put_bytes(&mut out, 2, &self.message(id, value, path)?),
            _ if value.is_null() => {}
            ty => {
                put_key(&mut out, 2, ty.wire_type());
                put_scalar(&mut out, ty, value, path)?;
            }
        }
        Ok(out)
    }

    fn special(&self, special: Special, value: &Value, path: &Path<'_>, out: &mut Vec<u8>) -> Result<(), Error> {
        let invalid = |reason: String| Error::invalid(path, reason);
        match special {
            Special::Time | Special::MicroTime => {
                let (seconds, nanos) = special::parse_time(expect_str(value, path)?).map_err(invalid)?;
                // Seconds are written even when 0: an empty Time is the zero time,
                // not the Unix epoch. Time keeps whole seconds, as upstream.
                put_key(out, 1, VARINT);
                put_varint(out, seconds as u64);
                if special == Special::MicroTime && nanos != 0 {
                    put_key(out, 2, VARINT);
                    put_varint(out, i64::from(nanos) as u64);
                }
            }
            Special::Duration => {
                let nanos = special::parse_duration(expect_str(value, path)?).map_err(invalid)?;
                put_key(out, 1, VARINT);
                put_varint(out, nanos as u64);
            }
            Special::Quantity => match value {
                Value::String(s) => put_bytes(out, 1, s.as_bytes()),
                Value::Number(n) => put_bytes(out, 1, n.to_string().as_bytes()),
                other => return Err(invalid(format!("expected a quantity, got {}", kind(other)))),
            },
            Special::IntOrString => {
                let (ty, int_val, str_val) = match value {
                    Value::String(s) => (1, 0, s.as_str()),
                    Value::Number(_) => {
                        let n = integer(value)
                            .and_then(|n| i32::try_from(n).ok())
                            .ok_or_else(|| invalid(format!("{value} is not a 32-bit integer")))?;
                        (0, n, "")
                    }
                    other => return Err(invalid(format!("expected an integer or a string, got {}", kind(other)))),
                };
                put_key(out, 1, VARINT);
                put_varint(out, ty);
                put_key(out, 2, VARINT);
                put_varint(out, i64::from(int_val) as u64);
                put_bytes(out, 3, str_val.as_bytes());
            }
            Special::RawExtension | Special::FieldsV1 => {
                let raw = serde_json::to_vec(value).map_err(|e| invalid(e.to_string()))?;
                put_bytes(out, 1, &raw);
            }
            Special::StringList => {
                for (i, item) in expect_array(value, path)?.iter().enumerate() {
                    put_bytes(out, 1, expect_str(item, &path.index(i))?.as_bytes());
                }
            }
        }
        Ok(())
    }
}

impl Type {
    fn wire_type(self) -> u8 {
        match self {
            Type::Fixed32 | Type::Sfixed32 | Type::Float => FIXED32,
            Type::Fixed64 | Type::Sfixed64 | Type::Double => FIXED64,
            Type::String | Type::Bytes | Type::Message(_) => LEN,
            _ => VARINT,
        }
    }
}

/// Writes a scalar's value (its key already written).
fn put_scalar(out: &mut Vec<u8>, ty: Type, value: &Value, path: &Path<'_>) -> Result<(), Error> {
    let int = |min: i128, max: i128| {
        integer(value).filter(|n| (min..=max).contains(n)).ok_or_else(|| match value {
            Value::Number(_) => Error::invalid(path, format!("{value} is out of range for {ty:?}")),
            other => Error::invalid(path, format!("expected an integer, got {}", kind(other))),
        })
    };
    let float =
        || value.as_f64().ok_or_else(|| Error::invalid(path, format!("expected a number, got {}", kind(value))));
    let i32_range = (i128::from(i32::MIN), i128::from(i32::MAX));
    let i64_range = (i128::from(i64::MIN), i128::from(i64::MAX));
    match ty {
        Type::Int32 | Type::Enum => put_varint(out, int(i32_range.0, i32_range.1)? as i64 as u64),
        Type::Int64 => put_varint(out, int(i64_range.0, i64_range.1)? as i64 as u64),
        Type::Uint32 => put_varint(out, int(0, i128::from(u32::MAX))? as u64),
        Type::Uint64 => put_varint(out, int(0, i128::from(u64::MAX))? as u64),
        Type::Sint32 => {
            let n = int(i32_range.0, i32_range.1)? as i32;
            put_varint(out, u64::from(((n << 1) ^ (n >> 31)) as u32));
        }
        Type::Sint64 => {
            let n = int(i64_range.0, i64_range.1)? as i64;
            put_varint(out, ((n << 1) ^ (n >> 63)) as u64);
        }
        Type::Fixed32 => out.extend_from_slice(&(int(0, i128::from(u32::MAX))? as u32).to_le_bytes()),
        Type::Sfixed32 => out.extend_from_slice(&(int(i32_range.0, i32_range.1)? as i32).to_le_bytes()),
        Type::Fixed64 => out.extend_from_slice(&(int(0, i128::from(u64::MAX))? as u64).to_le_bytes()),
        Type::Sfixed64 => out.extend_from_slice(&(int(i64_range.0, i64_range.1)? as i64).to_le_bytes()),
        Type::Float => out.extend_from_slice(&(float()? as f32).to_le_bytes()),
        Type::Double => out.extend_from_slice(&float()?.to_le_bytes()),
        Type::Bool => {
            let b =
                value.as_bool().ok_or_else(|| Error::invalid(path, format!("expected a bool, got {}", kind(value))))?;
            put_varint(out, u64::from(b));
        }
        Type::String => {
            let s = expect_str(value, path)?;
            put_varint(out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
        Type::Bytes => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(expect_str(value, path)?)
                .map_err(|e| Error::invalid(path, format!("not base64: {e}")))?;
            put_varint(out, bytes.len() as u64);
            out.extend_from_slice(&bytes);
        }
        Type::Message(_) => unreachable!("messages are not scalars"),
    }
    Ok(())
}

/// A JSON number as an integer, if it is one (`3.0` is, as Go accepts it).
fn integer(value: &Value) -> Option<i128> {
    let n = value.as_number()?;
    if let Some(i) = n.as_i64() {
        return Some(i128::from(i));
    }
    if let Some(u) = n.as_u64() {
        return Some(i128::from(u));
    }
    let f = n.as_f64()?;
    (f.fract() == 0.0 && f.abs() < 1.8e19).then_some(f as i128)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn expect_object<'v>(value: &'v Value, path: &Path<'_>) -> Result<&'v Map<String, Value>, Error> {
    value.as_object().ok_or_else(|| Error::invalid(path, format!("expected an object, got {}", kind(value))))
}

fn expect_array<'v>(value: &'v Value, path: &Path<'_>) -> Result<&'v Vec<Value>, Error> {
    value.as_array().ok_or_else(|| Error::invalid(path, format!("expected an array, got {}", kind(value))))
}

fn expect_str<'v>(value: &'v Value, path: &Path<'_>) -> Result<&'v str, Error> {
    value.as_str().ok_or_else(|| Error::invalid(path, format!("expected a string, got {}", kind(value))))
}
