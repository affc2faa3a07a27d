//! The protobuf wire format: varints, tags and length-delimited fields.

/// A malformed protobuf buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WireError(pub(crate) &'static str);

/// One value as it appears on the wire, before its field's type gives it meaning.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum WireValue<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// Reads `(field number, value)` pairs from a message's bytes.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn varint(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        for (i, &byte) in self.buf.iter().enumerate().take(10) {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                self.buf = &self.buf[i + 1..];
                return Ok(value);
            }
        }
        Err(WireError(if self.buf.len() < 10 { "truncated varint" } else { "varint longer than 10 bytes" }))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return Err(WireError("truncated field"));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub(crate) fn fixed32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }

    pub(crate) fn fixed64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }

    /// The next field, or `None` at the end of the buffer.
    pub(crate) fn field(&mut self) -> Result<Option<(u32, WireValue<'a>)>, WireError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let number = u32::try_from(key >> 3).map_err(|_| WireError("field number out of range"))?;
        if number == 0 {
            return Err(WireError("field number 0"));
        }
        let value = match key & 7 {
            0 => WireValue::Varint(self.varint()?),
            1 => WireValue::Fixed64(self.fixed64()?),
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| WireError("length out of range"))?;
                WireValue::Bytes(self.take(len)?)
            }
            5 => WireValue::Fixed32(self.fixed32()?),
            3 | 4 => return Err(WireError("groups are not supported")),
            _ => return Err(WireError("invalid wire type")),
        };
        Ok(Some((number, value)))
    }
}

pub(crate) const VARINT: u8 = 0;
pub(crate) const FIXED64: u8 = 1;
pub(crate) const LEN: u8 = 2;
pub(crate) const FIXED32: u8 = 5;

pub(crate) fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

pub(crate) fn put_key(out: &mut Vec<u8>, number: u32, wire_type: u8) {
    put_varint(out, (u64::from(number) << 3) | u64::from(wire_type));
}

pub(crate) fn put_bytes(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    put_key(out, number, LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_their_edges() {
        for value in [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX, (-1i64) as u64] {
            let mut buf = Vec::new();
            put_varint(&mut buf, value);
            let mut reader = Reader::new(&buf);
            assert_eq!(reader.varint(), Ok(value));
            assert!(reader.is_empty());
        }
    }

    #[test]
    fn fields_are_read_in_order_with_their_wire_types() {
        let mut buf = Vec::new();
        put_key(&mut buf, 1, VARINT);
        put_varint(&mut buf, 150);
        put_bytes(&mut buf, 2, b"hi");
        put_key(&mut buf, 3, FIXED32);
        buf.extend_from_slice(&7u32.to_le_bytes());
        put_key(&mut buf, 4, FIXED64);
        buf.extend_from_slice(&9u64.to_le_bytes());
        let mut reader = Reader::new(&buf);
        assert_eq!(reader.field(), Ok(Some((1, WireValue::Varint(150)))));
        assert_eq!(reader.field(), Ok(Some((2, WireValue::Bytes(b"hi")))));
        assert_eq!(reader.field(), Ok(Some((3, WireValue::Fixed32(7)))));
        assert_eq!(reader.field(), Ok(Some((4, WireValue::Fixed64(9)))));
        assert_eq!(reader.field(), Ok(None));
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        assert!(Reader::new(&[0x0a, 0x05, b'a']).field().is_err());
        assert!(Reader::new(&[0x08, 0x80]).field().is_err());
        assert!(Reader::new(&[0x0b]).field().is_err());
        assert!(Reader::new(&[0x00, 0x01]).field().is_err());
    }
}
