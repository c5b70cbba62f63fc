//! The unit-file syntax of systemd.syntax(7): sections, `Key=Value` entries, comments, line
//! continuations, and the specifiers (`%n`, `%i`, ...) a value may hold.
//!
//! - A line whose first non-blank character is `#` or `;` is a comment; blank lines are skipped.
//! - `[Section]` starts a section; an entry before any section is an error.
//! - `Key=Value`: blanks around the key and the value are dropped; a line without `=` is an
//!   error.
//! - A line ending in `\` continues on the next line; the backslash becomes a space. Comment
//!   lines inside a continued line are skipped, as systemd does.
//! - Keys may repeat. [`UnitFile::list`] gives the values of a list-valued key after its last
//!   empty assignment (`Environment=` alone clears the list); [`UnitFile::last`] gives the last
//!   value of a single-valued key, which wins in systemd.

use crate::limits;
use crate::UnitError;

/// One `Key=Value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The section it is in, without brackets.
    pub section: String,
    /// The key.
    pub key: String,
    /// The value, blanks around it removed, continuations joined; specifiers not expanded.
    pub value: String,
    /// The line number (from 1) where the entry starts.
    pub line: usize,
}

impl Entry {
    /// An error naming this entry: its value is bad.
    pub fn invalid(&self, message: impl Into<String>) -> UnitError {
        UnitError::Invalid {
            section: self.section.clone(),
            key: self.key.clone(),
            line: self.line,
            message: message.into(),
        }
    }

    /// An error naming this entry: it has no equivalent.
    pub fn untranslatable(&self, reason: impl Into<String>) -> UnitError {
        UnitError::Untranslatable {
            section: self.section.clone(),
            key: self.key.clone(),
            line: self.line,
            reason: reason.into(),
        }
    }

    /// `[Section] Key=` for lists of ignored directives.
    pub fn label(&self) -> String {
        format!("[{}] {}= (line {})", self.section, self.key, self.line)
    }
}

/// A parsed unit file: its entries in file order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnitFile {
    /// Every entry, in file order.
    pub entries: Vec<Entry>,
}

impl UnitFile {
    /// Parses unit-file text. Errors name the line.
    pub fn parse(text: &str) -> Result<UnitFile, UnitError> {
        if text.len() > limits::UNIT_FILE_BYTES_MAX {
            return Err(UnitError::Syntax {
                line: 0,
                message: format!(
                    "the unit file is longer than {} bytes",
                    limits::UNIT_FILE_BYTES_MAX
                ),
            });
        }
        let mut entries = Vec::new();
        let mut section: Option<String> = None;
        // A logical line being assembled from continued physical lines: (first line, text).
        let mut pending: Option<(usize, String)> = None;
        for (index, raw) in text.lines().enumerate() {
            let number = index + 1;
            let trimmed = raw.trim();
            if let Some((start, mut joined)) = pending.take() {
                if trimmed.starts_with('#') || trimmed.starts_with(';') {
                    pending = Some((start, joined));
                    continue;
                }
                match raw.strip_suffix('\\') {
                    Some(head) => {
                        joined.push_str(head);
                        joined.push(' ');
                        pending = Some((start, joined));
                    }
                    None => {
                        joined.push_str(raw);
                        Self::logical_line(&mut entries, &mut section, start, &joined)?;
                    }
                }
                continue;
            }
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
                continue;
            }
            match raw.strip_suffix('\\') {
                Some(head) if !trimmed.starts_with('[') => {
                    pending = Some((number, format!("{head} ")));
                }
                _ => Self::logical_line(&mut entries, &mut section, number, raw)?,
            }
            if entries.len() > limits::UNIT_ENTRIES_MAX {
                return Err(UnitError::Syntax {
                    line: number,
                    message: format!("more than {} entries", limits::UNIT_ENTRIES_MAX),
                });
            }
        }
        if let Some((start, joined)) = pending {
            // A continuation at the end of the file ends the line, as in systemd.
            Self::logical_line(&mut entries, &mut section, start, &joined)?;
        }
        Ok(UnitFile { entries })
    }

    fn logical_line(
        entries: &mut Vec<Entry>,
        section: &mut Option<String>,
        line: usize,
        text: &str,
    ) -> Result<(), UnitError> {
        let trimmed = text.trim();
        if let Some(rest) = trimmed.strip_prefix('[') {
            let name = rest.strip_suffix(']').ok_or_else(|| UnitError::Syntax {
                line,
                message: format!("section header '{trimmed}' does not end with ']'"),
            })?;
            if name.is_empty() || name.contains(['[', ']']) {
                return Err(UnitError::Syntax {
                    line,
                    message: format!("bad section name '{name}'"),
                });
            }
            *section = Some(name.to_string());
            return Ok(());
        }
        let Some(current) = section.as_ref() else {
            return Err(UnitError::Syntax {
                line,
                message: "an assignment before any [Section] header".to_string(),
            });
        };
        let Some((key, value)) = trimmed.split_once('=') else {
            return Err(UnitError::Syntax {
                line,
                message: format!("'{trimmed}' is not a Key=Value assignment"),
            });
        };
        let key = key.trim();
        if key.is_empty()
            || !key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return Err(UnitError::Syntax {
                line,
                message: format!("bad key '{key}'"),
            });
        }
        entries.push(Entry {
            section: current.clone(),
            key: key.to_string(),
            value: value.trim().to_string(),
            line,
        });
        Ok(())
    }

    /// Every entry of `section`/`key`, in file order.
    pub fn all(&self, section: &str, key: &str) -> Vec<&Entry> {
        self.entries
            .iter()
            .filter(|e| e.section == section && e.key == key)
            .collect()
    }

    /// The entries of a list-valued key after its last empty assignment (which clears the list).
    pub fn list(&self, section: &str, key: &str) -> Vec<&Entry> {
        let all = self.all(section, key);
        let from = all
            .iter()
            .rposition(|e| e.value.is_empty())
            .map_or(0, |i| i + 1);
        all[from..].to_vec()
    }

    /// The last entry of a single-valued key (the one systemd uses), unless it is empty (which
    /// resets the key to its default).
    pub fn last(&self, section: &str, key: &str) -> Option<&Entry> {
        self.all(section, key)
            .last()
            .copied()
            .filter(|e| !e.value.is_empty())
    }
}

/// The parts of a unit name: `prefix@instance.suffix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitName {
    /// The whole name, e.g. `web@blue.service`.
    pub full: String,
    /// Before `@` (or before the suffix), e.g. `web`.
    pub prefix: String,
    /// After `@`, e.g. `blue`; `None` for a plain unit; `Some("")` for a template.
    pub instance: Option<String>,
    /// The type suffix without the dot, e.g. `service`.
    pub suffix: String,
}

impl UnitName {
    /// Splits a unit name, which must end in `.<suffix>` (e.g. `service`, `timer`).
    pub fn parse(name: &str, suffix: &str) -> Result<UnitName, UnitError> {
        let fail = |reason: String| UnitError::UnitName {
            name: name.to_string(),
            reason,
        };
        if name.len() > limits::UNIT_NAME_LEN_MAX {
            return Err(fail(format!(
                "longer than {} bytes",
                limits::UNIT_NAME_LEN_MAX
            )));
        }
        let stem = name
            .strip_suffix(&format!(".{suffix}"))
            .ok_or_else(|| fail(format!("a .{suffix} unit name must end in .{suffix}")))?;
        let (prefix, instance) = match stem.split_once('@') {
            Some((p, i)) => (p, Some(i.to_string())),
            None => (stem, None),
        };
        if prefix.is_empty() {
            return Err(fail("the name before the suffix is empty".to_string()));
        }
        if name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/')
        {
            return Err(fail(
                "unit names hold no blanks, slashes or controls".to_string(),
            ));
        }
        Ok(UnitName {
            full: name.to_string(),
            prefix: prefix.to_string(),
            instance,
            suffix: suffix.to_string(),
        })
    }

    /// The name without its type suffix, e.g. `web@blue`.
    pub fn without_suffix(&self) -> String {
        match &self.instance {
            Some(instance) => format!("{}@{}", self.prefix, instance),
            None => self.prefix.clone(),
        }
    }
}

/// Undoes systemd's unit-name escaping (`\xNN`), as `%I` and `%P` do.
pub fn unescape_name(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() && bytes[i + 1] == b'x' {
            let hex = std::str::from_utf8(&bytes[i + 2..i + 4]).ok();
            if let Some(value) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(value);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Expands the specifiers of a value that have a meaning without the machine the unit runs on:
/// `%n` (full unit name), `%N` (without the type suffix), `%p`/`%P` (prefix, escaped/unescaped),
/// `%i`/`%I` (instance, escaped/unescaped) and `%%`. Every other specifier (`%H` host name,
/// `%u` user, `%h` home, `%m` machine ID, ...) depends on the machine and is refused with an
/// error naming it, as is `%i` in a unit without an instance.
pub fn expand_specifiers(entry: &Entry, name: &UnitName) -> Result<String, UnitError> {
    let refuse = |specifier: char, reason: &str| UnitError::Specifier {
        section: entry.section.clone(),
        key: entry.key.clone(),
        line: entry.line,
        specifier,
        reason: reason.to_string(),
    };
    let mut out = String::with_capacity(entry.value.len());
    let mut chars = entry.value.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(specifier) = chars.next() else {
            return Err(refuse(' ', "a lone % at the end of the value"));
        };
        match specifier {
            '%' => out.push('%'),
            'n' => out.push_str(&name.full),
            'N' => out.push_str(&name.without_suffix()),
            'p' => out.push_str(&name.prefix),
            'P' => out.push_str(&unescape_name(&name.prefix)),
            'i' | 'I' => match name.instance.as_deref() {
                Some(instance) if !instance.is_empty() => {
                    if specifier == 'i' {
                        out.push_str(instance);
                    } else {
                        out.push_str(&unescape_name(instance));
                    }
                }
                _ => {
                    return Err(refuse(
                        specifier,
                        "the unit has no instance (only name@instance.service has one)",
                    ))
                }
            },
            other => {
                return Err(refuse(
                    other,
                    "it depends on the machine the unit runs on; only %n %N %p %P %i %I %% \
                     are expanded",
                ))
            }
        }
    }
    Ok(out)
}
