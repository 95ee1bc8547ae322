//! Reading one message's wire format into the columns, as a plan says. Singular fields keep
//! the last value on the wire (and messages merge), as the wire format defines; lists take
//! their items as they come, packed or not.

use super::columns::{Column, Node, SlotState, Values};
use super::plan::{Plan, Read};
use super::wire::{Wire, WireReader};

/// Reads the message held in `ranges` of `payload` (more than one when a singular message
/// field occurs more than once: they merge) as one row of `node`. On `Err` the node may hold
/// part of the row: the caller truncates it.
pub(super) fn read_message(
    node: &mut Node,
    plan: &Plan,
    payload: &[u8],
    ranges: &[(usize, usize)],
) -> Result<(), String> {
    let Node {
        columns,
        slots,
        oneofs,
        rows,
        ..
    } = node;
    for slot in slots.iter_mut() {
        slot.clear();
    }
    let mut seen = 0;
    for &range in ranges {
        let mut wire = WireReader::new(payload, range);
        while !wire.at_end() {
            let (number, kind) = wire.tag()?;
            seen += 1;
            let Some(i) = plan.column_of(number) else {
                wire.skip(number, kind)
                    .map_err(|e| format!("field number {number} (not read): {e}"))?;
                continue;
            };
            let column = &mut columns[i];
            let read = &plan.reads[i];
            let result = if column.repeated {
                read_item(column, read, kind, &mut wire, payload)
            } else {
                slots[i].seen = seen;
                remember(&mut slots[i], read, kind, &mut wire)
            };
            result.map_err(|e| in_field(column, e))?;
        }
    }
    // Of a oneof's members sent, the last one is the one set.
    for members in oneofs.iter() {
        let last = members
            .iter()
            .filter(|&&i| slots[i].state != SlotState::Unset)
            .max_by_key(|&&i| slots[i].seen)
            .copied();
        for &i in members {
            if Some(i) != last {
                slots[i].clear();
            }
        }
    }
    for ((column, slot), read) in columns.iter_mut().zip(slots.iter()).zip(&plan.reads) {
        if column.repeated {
            column.close_list();
            continue;
        }
        let written = match (slot.state, read) {
            (SlotState::Unset, _) => {
                if column.required {
                    return Err(format!("required field `{}` is missing", column.path));
                }
                column.push_absent();
                continue;
            }
            (SlotState::Raw, Read::Scalar(scalar)) => {
                column.values.push_scalar(*scalar, slot.raw);
                Ok(())
            }
            (SlotState::Ranges, read) => {
                read_value(&mut column.values, read, payload, &slot.ranges)
            }
            (SlotState::Raw, _) => unreachable!("only scalars are kept raw"),
        };
        written.map_err(|e| in_field(column, e))?;
        column.mark_present();
    }
    *rows += 1;
    Ok(())
}

fn in_field(column: &Column, error: String) -> String {
    // Errors from nested messages already name their field.
    if error.starts_with("field `") || error.starts_with("required field") {
        error
    } else {
        format!(
            "field `{}` (number {}): {error}",
            column.path,
            column.descriptor.number()
        )
    }
}

fn expected(read: &Read) -> Wire {
    match read {
        Read::Scalar(scalar) => scalar.wire(),
        _ => Wire::Len,
    }
}

fn wrong_wire(read: &Read, found: Wire) -> String {
    format!("found {}, expected {}", found.name(), expected(read).name())
}

/// Keeps a singular field's occurrence until the message ends.
fn remember(
    slot: &mut super::columns::Slot,
    read: &Read,
    found: Wire,
    wire: &mut WireReader,
) -> Result<(), String> {
    if found != expected(read) {
        return Err(wrong_wire(read, found));
    }
    match read {
        Read::Scalar(_) => {
            slot.raw = wire.scalar(found)?;
            slot.state = SlotState::Raw;
        }
        Read::Text | Read::Binary => {
            let range = wire.len_range()?;
            slot.ranges.clear();
            slot.ranges.push(range);
            slot.state = SlotState::Ranges;
        }
        Read::Timestamp | Read::Wrapped(_) | Read::Message(_) => {
            slot.ranges.push(wire.len_range()?);
            slot.state = SlotState::Ranges;
        }
    }
    Ok(())
}

/// Reads one occurrence of a repeated field: an item, or a packed run of scalars.
fn read_item(
    column: &mut Column,
    read: &Read,
    found: Wire,
    wire: &mut WireReader,
    payload: &[u8],
) -> Result<(), String> {
    match read {
        Read::Scalar(scalar) if found == scalar.wire() => {
            column.values.push_scalar(*scalar, wire.scalar(found)?);
        }
        Read::Scalar(scalar) if found == Wire::Len => {
            let mut packed = WireReader::new(payload, wire.len_range()?);
            while !packed.at_end() {
                let raw = packed
                    .scalar(scalar.wire())
                    .map_err(|e| format!("a packed item: {e}"))?;
                column.values.push_scalar(*scalar, raw);
            }
        }
        _ if found == Wire::Len => {
            let range = wire.len_range()?;
            read_value(&mut column.values, read, payload, &[range])?;
        }
        _ => return Err(wrong_wire(read, found)),
    }
    Ok(())
}

/// Reads a length-delimited value (the last of `ranges` for text and bytes, all of them
/// merged for messages) into `values`.
fn read_value(
    values: &mut Values,
    read: &Read,
    payload: &[u8],
    ranges: &[(usize, usize)],
) -> Result<(), String> {
    match read {
        Read::Text | Read::Binary => {
            let (start, end) = *ranges.last().expect("a value was kept");
            values.push_bytes(&payload[start..end])
        }
        Read::Message(plan) => {
            let Values::Message(node) = values else {
                unreachable!("message reads fill message columns")
            };
            read_message(node, plan, payload, ranges)
        }
        Read::Timestamp => {
            let (mut seconds, mut nanos) = (0i64, 0i32);
            for_each_field(payload, ranges, |number, found, wire| {
                match (number, found) {
                    (1, Wire::Varint) => seconds = wire.varint()? as i64,
                    (2, Wire::Varint) => nanos = wire.varint()? as i32,
                    (1 | 2, other) => {
                        return Err(format!(
                            "google.protobuf.Timestamp field {number}: found {}, expected a \
                             varint",
                            other.name()
                        ));
                    }
                    (number, found) => wire.skip(number, found)?,
                }
                Ok(())
            })?;
            values.push_timestamp(seconds, nanos)
        }
        Read::Wrapped(inner) => {
            let mut value = None;
            for_each_field(payload, ranges, |number, found, wire| {
                if number != 1 {
                    return wire.skip(number, found);
                }
                if found != expected(inner) {
                    return Err(format!("the wrapped value: {}", wrong_wire(inner, found)));
                }
                value = Some(match inner.as_ref() {
                    Read::Scalar(_) => Wrapped::Raw(wire.scalar(found)?),
                    _ => Wrapped::Range(wire.len_range()?),
                });
                Ok(())
            })?;
            match (value, inner.as_ref()) {
                (Some(Wrapped::Raw(raw)), Read::Scalar(scalar)) => {
                    values.push_scalar(*scalar, raw);
                    Ok(())
                }
                (Some(Wrapped::Range((start, end))), _) => values.push_bytes(&payload[start..end]),
                // A wrapper present with its value left out holds the default.
                (None, Read::Scalar(scalar)) => {
                    values.push_scalar(*scalar, 0);
                    Ok(())
                }
                (None, _) => values.push_bytes(&[]),
                (Some(Wrapped::Raw(_)), _) => unreachable!("raw values are scalars"),
            }
        }
        Read::Scalar(_) => unreachable!("scalars are not length-delimited"),
    }
}

enum Wrapped {
    Raw(u64),
    Range((usize, usize)),
}

/// Calls `each` with every field of the message in `ranges`, to read or skip its value.
fn for_each_field(
    payload: &[u8],
    ranges: &[(usize, usize)],
    mut each: impl FnMut(u32, Wire, &mut WireReader) -> Result<(), String>,
) -> Result<(), String> {
    for &range in ranges {
        let mut wire = WireReader::new(payload, range);
        while !wire.at_end() {
            let (number, found) = wire.tag()?;
            each(number, found, &mut wire)?;
        }
    }
    Ok(())
}
