//! `${VAR}`, `${VAR:-default}` and `${file:PATH}` in pipeline.toml, replaced before parsing;
//! a small scanner of TOML strings and comments keeps references in comments as written.
//!
//! It depends on the standard library alone, so that its fuzz target (`fuzz/`) builds it
//! without the rest of weir.

use std::collections::BTreeMap;
use std::path::Path;

/// Looks up `${...}` references: the process environment, or overrides in tests and the
/// quickstart.
pub trait Vars {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct Environment;

impl Vars for Environment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// Overrides on top of the process environment.
impl Vars for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned().or_else(|| std::env::var(name).ok())
    }
}

/// A reference that cannot be replaced: on which line (from 1) and why.
#[derive(Debug)]
pub struct Unexpanded {
    pub line: usize,
    pub message: String,
}

/// Replaces `${VAR}`, `${VAR:-default}` and `${file:PATH}`; `$${` is a literal `${`.
/// Values are escaped for a TOML basic string, so newlines and quotes cannot leave it.
/// Returns the text and the values put in, which errors must not show. `path` is the
/// file's, against which `${file:...}` paths are resolved.
pub fn expand(
    text: &str,
    path: &Path,
    vars: &dyn Vars,
) -> Result<(String, Vec<String>), Unexpanded> {
    let mut out = String::with_capacity(text.len());
    let mut substituted = Vec::new();
    let mut strings = StringState::Outside;
    for (index, whole) in text.split_inclusive('\n').enumerate() {
        // Comments are left as written: a `${...}` in one is prose, not a reference.
        let (line, comment) = whole.split_at(comment_start(whole, &mut strings));
        let mut rest = line;
        while let Some(start) = rest.find("${") {
            if rest[..start].ends_with('$') {
                out.push_str(&rest[..start - 1]);
                out.push_str("${");
                rest = &rest[start + 2..];
                continue;
            }
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return Err(Unexpanded {
                    line: index + 1,
                    message: "unclosed `${`".into(),
                });
            };
            let reference = &after[..end];
            let value = resolve(reference, path, vars).map_err(|message| Unexpanded {
                line: index + 1,
                message,
            })?;
            escape_into(&mut out, &value);
            substituted.push(value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out.push_str(comment);
    }
    Ok((out, substituted))
}

/// Which TOML string the text is inside, carried from line to line for multi-line strings.
#[derive(Clone, Copy, PartialEq)]
enum StringState {
    Outside,
    Basic,
    Literal,
    MultiBasic,
    MultiLiteral,
}

/// Where `line`'s comment starts (its length when it has none), following `state` through
/// the line's strings.
fn comment_start(line: &str, state: &mut StringState) -> usize {
    // Bytes, not chars: every delimiter is ASCII, and an escape (`\`) may precede a
    // character of several bytes.
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &bytes[i..];
        match *state {
            StringState::Outside => {
                if rest.starts_with(b"\"\"\"") {
                    *state = StringState::MultiBasic;
                    i += 3;
                    continue;
                }
                if rest.starts_with(b"'''") {
                    *state = StringState::MultiLiteral;
                    i += 3;
                    continue;
                }
                match bytes[i] {
                    b'#' => return i,
                    b'"' => *state = StringState::Basic,
                    b'\'' => *state = StringState::Literal,
                    _ => {}
                }
            }
            StringState::Basic | StringState::MultiBasic if bytes[i] == b'\\' => i += 1,
            StringState::Basic if bytes[i] == b'"' || bytes[i] == b'\n' => {
                *state = StringState::Outside;
            }
            StringState::Literal if bytes[i] == b'\'' || bytes[i] == b'\n' => {
                *state = StringState::Outside;
            }
            StringState::MultiBasic if rest.starts_with(b"\"\"\"") => {
                *state = StringState::Outside;
                i += 3;
                continue;
            }
            StringState::MultiLiteral if rest.starts_with(b"'''") => {
                *state = StringState::Outside;
                i += 3;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    line.len()
}

fn resolve(reference: &str, path: &Path, vars: &dyn Vars) -> Result<String, String> {
    if let Some(file) = reference.strip_prefix("file:") {
        let file = Path::new(file);
        let file = if file.is_absolute() {
            file.to_owned()
        } else {
            path.parent().unwrap_or(Path::new(".")).join(file)
        };
        return std::fs::read_to_string(&file)
            .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
            .map_err(|e| format!("cannot read `${{file:{}}}`: {e}", file.display()));
    }
    let (name, default) = match reference.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (reference, None),
    };
    let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!("`${{{reference}}}` is not a variable reference"));
    }
    match (vars.var(name), default) {
        (Some(value), _) => Ok(value),
        (None, Some(default)) => Ok(default.to_owned()),
        (None, None) => Err(format!(
            "environment variable `{name}` is not set (use `${{{name}:-default}}` for a default)"
        )),
    }
}

fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_in_comments_stay_as_written() {
        let text = "# set ${UNSET} or use ${file:/no/such/file}\n\
                    a = \"#${X}\" # ${UNSET}\n\
                    b = '#' # '${UNSET}'\n\
                    c = \"\"\"\nline # ${X}\n\"\"\"\n";
        let vars = BTreeMap::from([("X".to_owned(), "x".to_owned())]);
        let (expanded, _) = expand(text, Path::new("p.toml"), &vars).unwrap();
        assert_eq!(
            expanded,
            "# set ${UNSET} or use ${file:/no/such/file}\n\
             a = \"#x\" # ${UNSET}\n\
             b = '#' # '${UNSET}'\n\
             c = \"\"\"\nline # x\n\"\"\"\n"
        );
    }

    #[test]
    fn an_escape_before_a_character_of_several_bytes_is_no_panic() {
        let vars = BTreeMap::from([("X".to_owned(), "x".to_owned())]);
        let (expanded, _) =
            expand("a = \"\\é ${X}\" # ${X}\n", Path::new("p.toml"), &vars).unwrap();
        assert_eq!(expanded, "a = \"\\é x\" # ${X}\n");
    }

    #[test]
    fn file_references_and_literal_dollars() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "from-file\n").unwrap();
        let (text, _) = expand(
            "a = \"${file:pw}\"\nb = \"$${X}\"\n",
            &dir.path().join("p.toml"),
            &Environment,
        )
        .unwrap();
        assert_eq!(text, "a = \"from-file\"\nb = \"${X}\"\n");
    }
}
