//! Functions analysts need that DataFusion lacks: privacy helpers for what may not land in a
//! data lake as it arrived.
//!
//! - `keyed_hash(value, 'key name')`: the hex HMAC-SHA256 of the value's text under a secret
//!   key from the pipeline file. Equal values give equal pseudonyms (joins and distinct counts
//!   still work), and without the key nobody can hash a guessed value to match one.
//! - `mask_email(text)`: the first character of the local part and the domain.
//! - `mask_ip(text)`: IPv4 to its /24, IPv6 to its /48; NULL for what is not an address.
//! - `redact(text)`: e-mail addresses, IPv4 and IPv6 addresses and long digit runs (card and
//!   phone numbers, however punctuated) in free text become `[redacted]`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, LazyLock};

use arrow::array::{Array, ArrayRef, AsArray, StringArray};
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use hmac::{Hmac, KeyInit, Mac};
use regex::Regex;

/// Every function of this module, with `keys` for `keyed_hash`.
pub fn all(keys: &HashKeys) -> Vec<ScalarUDF> {
    let mut functions = vec![ScalarUDF::from(KeyedHash {
        keys: keys.clone(),
        signature: Signature::any(2, Volatility::Immutable),
    })];
    for text in [Text::MaskEmail, Text::MaskIp, Text::Redact] {
        functions.push(ScalarUDF::from(TextFunction {
            text,
            signature: Signature::string(1, Volatility::Immutable),
        }));
    }
    functions
}

/// Secret keys for `keyed_hash`, by the name SQL uses. Never printed.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct HashKeys(Arc<BTreeMap<String, Vec<u8>>>);

impl HashKeys {
    pub fn new(keys: BTreeMap<String, Vec<u8>>) -> Self {
        Self(Arc::new(keys))
    }
}

impl std::fmt::Debug for HashKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct KeyedHash {
    keys: HashKeys,
    signature: Signature,
}

impl ScalarUDFImpl for KeyedHash {
    fn name(&self) -> &str {
        "keyed_hash"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    // Checked when the SQL is planned, so that a wrong key name or argument fails
    // `weir sql check` instead of dead-lettering every batch in production.
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let value = args.arg_fields[0].data_type();
        if !(value.is_integer()
            || matches!(
                value,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null
            ))
        {
            return plan_err!(
                "keyed_hash hashes text or integers, not {value}: cast it to the text you mean to \
                 hash, e.g. keyed_hash(CAST(x AS VARCHAR), 'name')"
            );
        }
        self.key(args.scalar_arguments.get(1).copied().flatten())?;
        Ok(Arc::new(Field::new(self.name(), DataType::Utf8, true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let name = match &args.args[1] {
            ColumnarValue::Scalar(name) => Some(name),
            ColumnarValue::Array(_) => None,
        };
        // The key's setup once per batch; each row hashes from a copy of it.
        let keyed = keyed_mac(self.key(name)?);
        let values = args.args[0].to_array(args.number_rows)?;
        let text = arrow::compute::cast(&values, &DataType::Utf8)?;
        let hashed: StringArray = text
            .as_string::<i32>()
            .iter()
            .map(|value| value.map(|v| mac_hex(keyed.clone(), v.as_bytes())))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(hashed)))
    }
}

impl KeyedHash {
    /// The key a literal `name` argument names.
    fn key(&self, name: Option<&ScalarValue>) -> Result<&[u8]> {
        let name = match name {
            Some(ScalarValue::Utf8(Some(n)) | ScalarValue::Utf8View(Some(n))) => n,
            _ => {
                return plan_err!(
                    "keyed_hash takes the key's name as a string literal, e.g. keyed_hash(user_id, 'users')"
                );
            }
        };
        match self.keys.0.get(name) {
            Some(key) => Ok(key),
            None => {
                let known: Vec<&String> = self.keys.0.keys().collect();
                plan_err!(
                    "keyed_hash: no key named '{name}' in the pipeline's [sql.keys] (it has {known:?})"
                )
            }
        }
    }
}

fn keyed_mac(key: &[u8]) -> Hmac<sha2::Sha256> {
    Hmac::new_from_slice(key).expect("HMAC takes any key length")
}

/// The hex HMAC of `value` under the key `mac` was set up with.
fn mac_hex(mut mac: Hmac<sha2::Sha256>, value: &[u8]) -> String {
    use std::fmt::Write;
    mac.update(value);
    let digest = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(digest.len() * 2);
    for byte in digest {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Text {
    MaskEmail,
    MaskIp,
    Redact,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct TextFunction {
    text: Text,
    signature: Signature,
}

impl ScalarUDFImpl for TextFunction {
    fn name(&self) -> &str {
        match self.text {
            Text::MaskEmail => "mask_email",
            Text::MaskIp => "mask_ip",
            Text::Redact => "redact",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let values = args.args[0].to_array(args.number_rows)?;
        let text: ArrayRef = arrow::compute::cast(&values, &DataType::Utf8)?;
        let f = match self.text {
            Text::MaskEmail => mask_email,
            Text::MaskIp => mask_ip,
            Text::Redact => redact,
        };
        let out: StringArray = text
            .as_string::<i32>()
            .iter()
            .map(|value| value.and_then(f))
            .collect();
        debug_assert_eq!(out.len(), text.len());
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// `jane.doe@example.com` → `j***@example.com`; text without an `@` → `***`.
fn mask_email(text: &str) -> Option<String> {
    match text.rsplit_once('@') {
        Some((local, domain)) if !local.is_empty() => {
            let first = local.chars().next().expect("not empty");
            Some(format!("{first}***@{domain}"))
        }
        _ => Some("***".to_owned()),
    }
}

/// `192.168.1.77` → `192.168.1.0`, `2001:db8:85a3:8d3::7348` → `2001:db8:85a3::`.
fn mask_ip(text: &str) -> Option<String> {
    match text.trim().parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            Some(std::net::Ipv4Addr::new(a, b, c, 0).to_string())
        }
        // A dual-stack server's IPv4 clients: mask them as IPv4.
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => {
            let [a, b, c, _] = v6.to_ipv4_mapped().expect("checked").octets();
            Some(std::net::Ipv4Addr::new(a, b, c, 0).to_string())
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            Some(std::net::Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0).to_string())
        }
    }
}

static SENSITIVE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        // e-mail addresses
        r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",
        // nine or more digits, maybe punctuated: cards, phones (`+1 (555) 123-4567`,
        // `06.12.34.56.78`, not only its first four numbers as an IPv4 address), accounts
        r"|\+?\(?\d(?:[ .()-]{0,3}\d){8,}",
        // IPv4 addresses
        r"|\b(?:\d{1,3}\.){3}\d{1,3}\b",
    ))
    .expect("a valid pattern")
});

/// What is not a number to hide: a date (`2026-11-25`, maybe with a time after it) or a
/// decimal number (`1234567.89`).
static NOT_SENSITIVE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(?:\d{4}-\d{2}-\d{2}|\d+\.\d+$)").expect("a valid pattern"));

/// What may be an IPv6 address: hex digits, colons (two at least) and dots (an IPv4 tail).
/// Parsing decides; a time such as `10:00:05` is not one.
static IPV6_CANDIDATE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[0-9A-Fa-f]*:[0-9A-Fa-f]*:[0-9A-Fa-f:.]*").expect("a valid pattern")
});

fn redact(text: &str) -> Option<String> {
    let mut redacted = String::with_capacity(text.len());
    let mut from = 0;
    for candidate in IPV6_CANDIDATE.find_iter(text) {
        // A sentence may end right after the address.
        let address = candidate.as_str().trim_end_matches('.');
        if address.parse::<std::net::Ipv6Addr>().is_ok() {
            redacted.push_str(&redact_others(&text[from..candidate.start()]));
            redacted.push_str("[redacted]");
            from = candidate.start() + address.len();
        }
    }
    redacted.push_str(&redact_others(&text[from..]));
    Some(redacted)
}

/// [`redact`] of what holds no IPv6 address.
fn redact_others(text: &str) -> std::borrow::Cow<'_, str> {
    SENSITIVE.replace_all(text, |found: &regex::Captures| {
        let found = &found[0];
        if NOT_SENSITIVE.is_match(found) {
            found.to_owned()
        } else {
            "[redacted]".to_owned()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_and_redacts() {
        assert_eq!(
            mask_email("jane.doe@example.com").unwrap(),
            "j***@example.com"
        );
        assert_eq!(mask_email("no address").unwrap(), "***");
        assert_eq!(mask_ip("192.168.1.77").unwrap(), "192.168.1.0");
        assert_eq!(
            mask_ip("2001:db8:85a3:8d3:1319:8a2e:370:7348").unwrap(),
            "2001:db8:85a3::"
        );
        assert_eq!(mask_ip("not an address"), None);
        assert_eq!(mask_ip("::ffff:203.0.113.77").unwrap(), "203.0.113.0");
        assert_eq!(
            redact("seen 2026-11-25 10:00, call 0612345678").unwrap(),
            "seen 2026-11-25 10:00, call [redacted]"
        );
        assert_eq!(
            redact("mail jane@example.com from 10.1.2.3, card 4111 1111 1111 1111, order 1234")
                .unwrap(),
            "mail [redacted] from [redacted], card [redacted], order 1234"
        );
    }

    #[test]
    fn redacts_phones_however_punctuated_and_ipv6_addresses() {
        for (text, redacted) in [
            ("call +1 (555) 123-4567 now", "call [redacted] now"),
            ("call (555) 123-4567", "call [redacted]"),
            ("tel 06.12.34.56.78.", "tel [redacted]."),
            ("tel 555.123.4567", "tel [redacted]"),
            ("from 2001:db8:85a3::8a2e:370:7348.", "from [redacted]."),
            ("from [fe80::1%eth0]:8080", "from [[redacted]%eth0]:8080"),
            ("mapped ::ffff:203.0.113.77 here", "mapped [redacted] here"),
            (
                "at 10:00:05, 10:00 and 2026-11-25T10:00:05Z",
                "at 10:00:05, 10:00 and 2026-11-25T10:00:05Z",
            ),
            (
                "paid 1234567.89 EUR, ref 12345678",
                "paid 1234567.89 EUR, ref 12345678",
            ),
            ("note: cafe:beef is fine", "note: cafe:beef is fine"),
            ("2001:db8::1 and 0612345678", "[redacted] and [redacted]"),
        ] {
            assert_eq!(redact(text).unwrap(), redacted, "{text}");
        }
    }

    fn hmac_hex(key: &[u8], value: &[u8]) -> String {
        mac_hex(keyed_mac(key), value)
    }

    #[test]
    fn keyed_hash_is_hmac_sha256() {
        // RFC 4231, test case 2.
        assert_eq!(
            hmac_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn keys_never_show_in_debug() {
        let keys = HashKeys::new(BTreeMap::from([(
            "users".to_owned(),
            b"a secret key of 32 bytes or more".to_vec(),
        )]));
        assert_eq!(format!("{keys:?}"), r#"["users"]"#);
        let shown = format!("{:?}", all(&keys)[0]);
        assert!(shown.contains(r#"keys: ["users"]"#), "{shown}");
    }
}
