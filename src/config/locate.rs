//! Errors placed at their line of pipeline.toml: found after parsing by searching the file as
//! written for the key or value at fault.

use std::path::Path;

use super::{ConfigError, PipelineConfig};

impl PipelineConfig {
    /// An error placed at the first line of the file that mentions `needle`.
    pub fn error_at(&self, needle: &str, message: String) -> ConfigError {
        self.error_at_line(find_line(&self.text, needle), message)
    }

    /// An error at the first line mentioning `key` in the table of transform `transform`.
    pub fn error_in_transform(&self, transform: &str, key: &str, message: String) -> ConfigError {
        let name = format!("\"{transform}\"");
        let start = self
            .text
            .lines()
            .position(|l| l.trim_start().starts_with("name") && l.contains(&name));
        let line = start.and_then(|start| {
            self.text
                .lines()
                .enumerate()
                .skip(start)
                .find(|(_, l)| l.contains(key))
                .map(|(i, _)| i + 1)
        });
        self.error_at_line(line, message)
    }

    fn error_at_line(&self, line: Option<usize>, message: String) -> ConfigError {
        match line {
            Some(line) => invalid(&self.path, &self.text, line, message),
            None => ConfigError::Check {
                path: self.path.clone(),
                message,
            },
        }
    }
}

pub(super) fn invalid(path: &Path, text: &str, line: usize, message: String) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_owned(),
        line,
        line_text: text
            .lines()
            .nth(line - 1)
            .unwrap_or_default()
            .trim()
            .to_owned(),
        message,
    }
}

/// The first line that mentions `needle`, 1-based.
fn find_line(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}
