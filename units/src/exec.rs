//! Command lines (`ExecStart=`) and environment assignments (`Environment=`) as
//! systemd.service(5) and systemd.exec(5) read them, and their shell form for Marathon's `cmd`
//! and Chronos' `command`.
//!
//! - Words are separated by blanks. Double or single quotes anywhere in a word keep blanks in it;
//!   the quotes are removed. C escapes (`\n`, `\t`, `\\`, `\"`, `\'`, `\s` for a space, `\xNN`,
//!   octal `\NNN`, `\uNNNN`, `\UNNNNNNNN`) are decoded inside and outside quotes.
//! - In a command line, a word that is exactly `$NAME` stands for the variable's value split at
//!   blanks; `${NAME}` anywhere in a word stands for the value as part of that word; `$$` is a
//!   literal `$`. Quotes do not stop this (systemd expands after unquoting).
//! - A lone `;` word (several commands on one line) is refused.

use std::fmt::Write as _;

/// A piece of a command-line word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Literal text.
    Text(String),
    /// `${NAME}`: the variable's value, as part of the word.
    Var(String),
}

/// One word of a command line after unquoting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Word {
    /// Literal text and `${NAME}` references, forming one argument.
    Pieces(Vec<Piece>),
    /// A word that is exactly `$NAME`: the value split at blanks, zero or more arguments.
    Split(String),
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    /// The words, executable first.
    pub words: Vec<Word>,
}

impl CommandLine {
    /// Parses an `ExecStart=` value (specifiers already expanded). Prefixes (`-`, `@`, `:`,
    /// `+`, `!`) are refused by the caller before this.
    pub fn parse(text: &str) -> Result<CommandLine, String> {
        let raw_words = split_words(text)?;
        if raw_words.is_empty() {
            return Err("the command line is empty".to_string());
        }
        let mut words = Vec::with_capacity(raw_words.len());
        for raw in raw_words {
            if raw == ";" {
                return Err(
                    "a lone ';' separates several commands, which has no equivalent here"
                        .to_string(),
                );
            }
            words.push(parse_word(&raw)?);
        }
        Ok(CommandLine { words })
    }

    /// True when the command refers to environment variables.
    pub fn has_variables(&self) -> bool {
        self.words.iter().any(|w| match w {
            Word::Split(_) => true,
            Word::Pieces(pieces) => pieces.iter().any(|p| matches!(p, Piece::Var(_))),
        })
    }

    /// The argument vector, when the command refers to no variable.
    pub fn literal_args(&self) -> Option<Vec<String>> {
        self.words
            .iter()
            .map(|w| match w {
                Word::Split(_) => None,
                Word::Pieces(pieces) => pieces
                    .iter()
                    .map(|p| match p {
                        Piece::Text(t) => Some(t.as_str()),
                        Piece::Var(_) => None,
                    })
                    .collect::<Option<String>>(),
            })
            .collect()
    }

    /// The command as a POSIX shell command line with the same arguments: literal text in
    /// single quotes (when it needs any), `${NAME}` as `"${NAME}"` (one word), `$NAME` unquoted
    /// (split at blanks, as systemd splits it; the shell also expands globs in it).
    pub fn to_shell(&self) -> String {
        let mut out = String::new();
        for (index, word) in self.words.iter().enumerate() {
            if index > 0 {
                out.push(' ');
            }
            match word {
                Word::Split(name) => {
                    let _ = write!(out, "${name}");
                }
                Word::Pieces(pieces) => {
                    if pieces
                        .iter()
                        .all(|p| matches!(p, Piece::Text(t) if t.is_empty()))
                    {
                        out.push_str("''");
                        continue;
                    }
                    for piece in pieces {
                        match piece {
                            Piece::Text(text) if text.is_empty() => {}
                            Piece::Text(text) => out.push_str(&shell_quote(text)),
                            Piece::Var(name) => {
                                let _ = write!(out, "\"${{{name}}}\"");
                            }
                        }
                    }
                }
            }
        }
        out
    }
}

/// Quotes a word for a POSIX shell: unchanged when it holds only safe characters, else in single
/// quotes (a `'` becomes `'\''`).
pub fn shell_quote(text: &str) -> String {
    let safe = !text.is_empty()
        && text.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'_' | b'.' | b'/' | b'=' | b':' | b',' | b'+' | b'@' | b'%' | b'-'
                )
        });
    if safe {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

fn is_var_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_var_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn parse_word(raw: &str) -> Result<Word, String> {
    if let Some(name) = raw.strip_prefix('$') {
        if name.starts_with(is_var_start) && name.chars().all(is_var_char) {
            return Ok(Word::Split(name.to_string()));
        }
    }
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut rest = raw;
    while let Some(at) = rest.find('$') {
        text.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            text.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('{') {
            let close = inner
                .find('}')
                .ok_or_else(|| format!("'${{' without '}}' in '{raw}'"))?;
            let name = &inner[..close];
            if !name.starts_with(is_var_start) || !name.chars().all(is_var_char) {
                return Err(format!("'${{{name}}}' is not a variable name"));
            }
            pieces.push(Piece::Text(std::mem::take(&mut text)));
            pieces.push(Piece::Var(name.to_string()));
            rest = &inner[close + 1..];
        } else {
            // A `$` that starts no reference stays literal, as in systemd.
            text.push('$');
            rest = after;
        }
    }
    text.push_str(rest);
    pieces.push(Piece::Text(text));
    pieces.retain(|p| !matches!(p, Piece::Text(t) if t.is_empty()));
    if pieces.is_empty() {
        pieces.push(Piece::Text(String::new()));
    }
    Ok(Word::Pieces(pieces))
}

/// Splits a value into words: blanks separate words, quotes keep blanks inside a word, C
/// escapes are decoded.
pub fn split_words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) if c == '\\' => current.push(unescape(&mut chars)?),
            Some(_) => current.push(c),
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            None => {
                in_word = true;
                match c {
                    '"' | '\'' => quote = Some(c),
                    '\\' => current.push(unescape(&mut chars)?),
                    _ => current.push(c),
                }
            }
        }
    }
    if let Some(q) = quote {
        return Err(format!("unterminated {q} quote"));
    }
    if in_word {
        words.push(current);
    }
    Ok(words)
}

fn hex_digits(chars: &mut std::str::Chars<'_>, count: usize, radix: u32) -> Result<u32, String> {
    let mut value = 0u32;
    for _ in 0..count {
        let digit = chars
            .next()
            .and_then(|c| c.to_digit(radix))
            .ok_or_else(|| "a truncated escape sequence".to_string())?;
        value = value * radix + digit;
    }
    Ok(value)
}

fn unescape(chars: &mut std::str::Chars<'_>) -> Result<char, String> {
    let c = chars
        .next()
        .ok_or_else(|| "a backslash at the end of the value".to_string())?;
    let decoded = match c {
        'a' => '\u{7}',
        'b' => '\u{8}',
        'f' => '\u{c}',
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        'v' => '\u{b}',
        's' => ' ',
        '\\' | '"' | '\'' => c,
        'x' => char::from_u32(hex_digits(chars, 2, 16)?).unwrap_or('\u{fffd}'),
        'u' => char::from_u32(hex_digits(chars, 4, 16)?)
            .ok_or_else(|| "\\u escape is not a character".to_string())?,
        'U' => char::from_u32(hex_digits(chars, 8, 16)?)
            .ok_or_else(|| "\\U escape is not a character".to_string())?,
        '0'..='7' => {
            let rest = hex_digits(chars, 2, 8)?;
            let value = c.to_digit(8).unwrap_or(0) * 64 + rest;
            char::from_u32(value).unwrap_or('\u{fffd}')
        }
        other => return Err(format!("unknown escape sequence '\\{other}'")),
    };
    if decoded == '\0' {
        return Err("a NUL character in the value".to_string());
    }
    Ok(decoded)
}

/// Parses an `Environment=` value into `(name, value)` assignments, in order.
pub fn parse_environment(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for word in split_words(text)? {
        let Some((name, value)) = word.split_once('=') else {
            return Err(format!("'{word}' is not a NAME=value assignment"));
        };
        if name.is_empty()
            || name.chars().any(|c| c == '=' || c.is_control() || c == ' ')
            || name.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(format!("'{name}' is not a variable name"));
        }
        out.push((name.to_string(), value.to_string()));
    }
    Ok(out)
}
