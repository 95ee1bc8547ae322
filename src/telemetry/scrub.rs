//! Texts that leave the process for people who need not see row values or credentials: the
//! status page, `/readyz`, and errors about telemetry endpoints.
//!
//! An error that fails a checkpoint can quote what it failed on: a value a cast refused, an
//! object path holding partition values (`country=…`), a URL with a user and password in it.
//! The full text goes to the log, where the operator looks; what the probes and the status
//! page show keeps its shape with those parts hidden.

use std::sync::LazyLock;

use regex::Regex;

/// What stands in for a hidden part.
const HIDDEN: &str = "…";

/// `text` with the user information of every URL in it hidden: `s3://key:secret@host/p`
/// becomes `s3://…@host/p`.
pub fn urls(text: &str) -> String {
    static USERINFO: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@").expect("a regex"));
    USERINFO
        .replace_all(text, format!("${{1}}{HIDDEN}@"))
        .into_owned()
}

/// `text` (an error) with what may be a row's value or a credential hidden: quoted values,
/// the values of Hive partition segments in paths (`/country=NL/` becomes `/country=…/`) and
/// user information in URLs.
pub fn error(text: &str) -> String {
    static QUOTED: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r#"'[^']*'|"[^"]*""#).expect("a regex"));
    static HIVE_VALUE: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(^|/)([^/=\s]+)=[^/\s]*").expect("a regex"));
    let text = urls(text);
    let text = QUOTED.replace_all(&text, |quoted: &regex::Captures| {
        let quote = &quoted[0][..1];
        format!("{quote}{HIDDEN}{quote}")
    });
    HIVE_VALUE
        .replace_all(&text, format!("${{1}}${{2}}={HIDDEN}"))
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_urls_are_hidden() {
        assert_eq!(
            urls("s3://AKIA:s3cret@minio:9000/bucket and http://u@collector:4318/"),
            "s3://…@minio:9000/bucket and http://…@collector:4318/"
        );
        assert_eq!(
            urls("file:///data/out, s3://bucket/a@b"),
            "file:///data/out, s3://bucket/a@b"
        );
    }

    #[test]
    fn row_values_in_errors_are_hidden() {
        let error = "cannot put out/clicks/dt=2026-11-25/email=ann@example.com/part-1.parquet: \
                     Cast error: Cannot cast string 'ann@example.com' to value of Int64 type, \
                     at \"s3://k:secret@host/x\"";
        assert_eq!(
            super::error(error),
            "cannot put out/clicks/dt=…/email=…/part-1.parquet: Cast error: Cannot cast \
             string '…' to value of Int64 type, at \"…\""
        );
        // What carries no value stays as it was.
        let plain = "storage: connection refused (os error 111) after 4 attempts";
        assert_eq!(super::error(plain), plain);
    }
}
