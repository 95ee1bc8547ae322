//! The Protobuf wire format, read in place: varints, fixed-width values, length-delimited
//! ranges and skipping what the reader does not know. Positions are offsets into the whole
//! payload, so that the ranges of nested messages stay valid while their parent is read.

/// How a field's value is laid out on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wire {
    Varint,
    Fixed64,
    Len,
    StartGroup,
    EndGroup,
    Fixed32,
}

impl Wire {
    fn of(tag: u64) -> Result<Wire, String> {
        Ok(match tag & 7 {
            0 => Wire::Varint,
            1 => Wire::Fixed64,
            2 => Wire::Len,
            3 => Wire::StartGroup,
            4 => Wire::EndGroup,
            5 => Wire::Fixed32,
            other => return Err(format!("wire type {other} does not exist")),
        })
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Wire::Varint => "a varint",
            Wire::Fixed64 => "8 fixed bytes",
            Wire::Len => "length-delimited bytes",
            Wire::StartGroup | Wire::EndGroup => "a group",
            Wire::Fixed32 => "4 fixed bytes",
        }
    }
}

/// Groups nest; unknown ones are skipped to this depth at most.
const MAX_GROUP_DEPTH: usize = 64;

/// Reads `payload[pos..end]`.
pub(super) struct WireReader<'a> {
    payload: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> WireReader<'a> {
    pub(super) fn new(payload: &'a [u8], (start, end): (usize, usize)) -> Self {
        Self {
            payload,
            pos: start,
            end,
        }
    }

    pub(super) fn at_end(&self) -> bool {
        self.pos >= self.end
    }

    /// Bytes not read yet.
    pub(super) fn remaining(&self) -> usize {
        self.end - self.pos
    }

    /// The next field's number and wire type.
    pub(super) fn tag(&mut self) -> Result<(u32, Wire), String> {
        let tag = self.varint().map_err(|e| format!("a field's tag: {e}"))?;
        let number = tag >> 3;
        if number == 0 || number > u64::from(u32::MAX >> 3) {
            return Err(format!("field number {number} is not a valid field number"));
        }
        Ok((number as u32, Wire::of(tag)?))
    }

    pub(super) fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for i in 0..10 {
            let Some(&byte) = self.payload[..self.end].get(self.pos) else {
                return Err("the message ends inside a varint".into());
            };
            self.pos += 1;
            if i == 9 && byte > 1 {
                return Err("a varint longer than 64 bits".into());
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err("a varint longer than 10 bytes".into())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.end - self.pos < n {
            return Err(format!(
                "the message ends inside a {n}-byte value ({} bytes left)",
                self.end - self.pos
            ));
        }
        let bytes = &self.payload[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    pub(super) fn fixed32(&mut self) -> Result<u64, String> {
        let bytes = self.take(4)?;
        Ok(u64::from(u32::from_le_bytes(
            bytes.try_into().expect("4 bytes"),
        )))
    }

    pub(super) fn fixed64(&mut self) -> Result<u64, String> {
        let bytes = self.take(8)?;
        Ok(u64::from_le_bytes(bytes.try_into().expect("8 bytes")))
    }

    /// A length-delimited value: its range in the payload.
    pub(super) fn len_range(&mut self) -> Result<(usize, usize), String> {
        let len = self.varint().map_err(|e| format!("a length: {e}"))?;
        let left = self.end - self.pos;
        if len > left as u64 {
            return Err(format!(
                "a length of {len} bytes runs past the end of the message ({left} bytes left)"
            ));
        }
        let start = self.pos;
        self.pos += len as usize;
        Ok((start, self.pos))
    }

    /// A scalar of the given wire type, as its raw 64 bits.
    pub(super) fn scalar(&mut self, wire: Wire) -> Result<u64, String> {
        match wire {
            Wire::Varint => self.varint(),
            Wire::Fixed64 => self.fixed64(),
            Wire::Fixed32 => self.fixed32(),
            other => unreachable!("{other:?} is not a scalar's wire type"),
        }
    }

    /// Skips the value of a field the reader does not know.
    pub(super) fn skip(&mut self, number: u32, wire: Wire) -> Result<(), String> {
        self.skip_nested(number, wire, 0)
    }

    fn skip_nested(&mut self, number: u32, wire: Wire, depth: usize) -> Result<(), String> {
        match wire {
            Wire::Varint => self.varint().map(drop),
            Wire::Fixed64 => self.fixed64().map(drop),
            Wire::Fixed32 => self.fixed32().map(drop),
            Wire::Len => self.len_range().map(drop),
            Wire::EndGroup => Err(format!("an end-group tag (field {number}) with no group")),
            Wire::StartGroup => {
                if depth >= MAX_GROUP_DEPTH {
                    return Err(format!("groups nested deeper than {MAX_GROUP_DEPTH}"));
                }
                loop {
                    if self.at_end() {
                        return Err(format!("group {number} has no end"));
                    }
                    match self.tag()? {
                        (inner, Wire::EndGroup) if inner == number => return Ok(()),
                        (inner, Wire::EndGroup) => {
                            return Err(format!("group {number} ended by the tag of {inner}"));
                        }
                        (inner, wire) => self.skip_nested(inner, wire, depth + 1)?,
                    }
                }
            }
        }
    }
}

pub(super) fn zigzag32(raw: u64) -> i32 {
    let n = raw as u32;
    ((n >> 1) as i32) ^ -((n & 1) as i32)
}

pub(super) fn zigzag64(raw: u64) -> i64 {
    ((raw >> 1) as i64) ^ -((raw & 1) as i64)
}
