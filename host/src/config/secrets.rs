//! References to values kept outside the pipeline file: `${env:NAME}` and `${file:PATH}`.
//!
//! The syntax is Kafka Connect's config-provider one (`${provider:argument}`), so a password can
//! live in an environment variable or a mounted secret file instead of in `pipeline.toml`. A
//! reference may be the whole value or part of it (`"user:${env:PASSWORD}"`); `$${` is a literal
//! `${`. A file's content is used as it is, except for one trailing line break (secret files
//! written with `echo` or by Kubernetes often end with one). Every value a reference produced is
//! remembered as a secret, so the host can keep it out of every line it writes.

use std::path::Path;

/// Where references are looked up; the real environment and file system in production.
pub(super) trait Lookup {
    /// The variable's value; `Err` says why there is none.
    fn env(&self, name: &str) -> Result<String, String>;
    /// The file's content; `Err` says why it cannot be read.
    fn file(&self, path: &Path) -> Result<String, String>;
}

/// The process's environment and file system.
pub(super) struct System;

impl Lookup for System {
    fn env(&self, name: &str) -> Result<String, String> {
        match std::env::var(name) {
            Ok(value) => Ok(value),
            Err(std::env::VarError::NotPresent) => Err("is not set".to_owned()),
            Err(std::env::VarError::NotUnicode(_)) => Err("is not valid UTF-8".to_owned()),
        }
    }

    fn file(&self, path: &Path) -> Result<String, String> {
        std::fs::read_to_string(path).map_err(|error| error.to_string())
    }
}

/// A value with its references replaced.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Resolved {
    pub value: String,
    /// The text each reference produced, in order (empty when the value had none).
    pub secrets: Vec<String>,
}

/// Replaces every reference in `text`. The error names the reference and why it failed; it never
/// contains a resolved value.
pub(super) fn resolve(text: &str, lookup: &impl Lookup) -> Result<Resolved, String> {
    let mut value = String::with_capacity(text.len());
    let mut secrets = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        value.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix("$${") {
            value.push_str("${");
            rest = after;
        } else if let Some(after) = rest.strip_prefix("${") {
            let end = after.find('}').ok_or_else(|| {
                format!("has an unterminated reference `${{{after}`: it must end with `}}` (write `$${{` for a literal `${{`)")
            })?;
            let secret = reference(&after[..end], lookup)?;
            value.push_str(&secret);
            secrets.push(secret);
            rest = &after[end + 1..];
        } else {
            value.push('$');
            rest = &rest[1..];
        }
    }
    value.push_str(rest);
    Ok(Resolved { value, secrets })
}

/// The text one reference (what is between `${` and `}`) stands for.
fn reference(inner: &str, lookup: &impl Lookup) -> Result<String, String> {
    let shown = format!("`${{{inner}}}`");
    match inner.split_once(':') {
        Some(("env", name)) if !name.is_empty() => lookup
            .env(name)
            .map_err(|why| format!("refers to {shown}, but environment variable {name} {why}")),
        Some(("file", path)) if !path.is_empty() => lookup
            .file(Path::new(path))
            .map(without_line_break)
            .map_err(|why| format!("refers to {shown}, but file {path} cannot be read: {why}")),
        _ => Err(format!(
            "has the reference {shown}, which is neither `${{env:NAME}}` nor `${{file:PATH}}` (write `$${{` for a literal `${{`)"
        )),
    }
}

/// `content` without one trailing `\n` or `\r\n`.
fn without_line_break(mut content: String) -> String {
    if content.ends_with('\n') {
        content.pop();
        if content.ends_with('\r') {
            content.pop();
        }
    }
    content
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake;

    impl Lookup for Fake {
        fn env(&self, name: &str) -> Result<String, String> {
            match name {
                "PASSWORD" => Ok("s3cret".to_owned()),
                "EMPTY" => Ok(String::new()),
                _ => Err("is not set".to_owned()),
            }
        }

        fn file(&self, path: &Path) -> Result<String, String> {
            match path.to_str() {
                Some("/run/secrets/kafka") => Ok("from-file\n".to_owned()),
                Some("/crlf") => Ok("two\nlines\r\n".to_owned()),
                _ => Err("No such file or directory (os error 2)".to_owned()),
            }
        }
    }

    fn ok(text: &str) -> Resolved {
        resolve(text, &Fake).unwrap()
    }

    #[test]
    fn plain_text_is_kept_and_is_no_secret() {
        let resolved = ok("a $ sign, $5 and a } brace");
        assert_eq!(resolved.value, "a $ sign, $5 and a } brace");
        assert!(resolved.secrets.is_empty());
    }

    #[test]
    fn references_are_replaced_and_remembered() {
        assert_eq!(
            ok("${env:PASSWORD}"),
            Resolved {
                value: "s3cret".to_owned(),
                secrets: vec!["s3cret".to_owned()]
            }
        );
        let resolved = ok("user=${env:PASSWORD};key=${file:/run/secrets/kafka}!");
        assert_eq!(resolved.value, "user=s3cret;key=from-file!");
        assert_eq!(resolved.secrets, ["s3cret", "from-file"]);
        assert_eq!(ok("${file:/crlf}").value, "two\nlines");
        assert_eq!(ok("${env:EMPTY}").value, "");
    }

    #[test]
    fn a_doubled_dollar_is_a_literal_reference() {
        let resolved = ok("$${env:PASSWORD} and $$ stays");
        assert_eq!(resolved.value, "${env:PASSWORD} and $$ stays");
        assert!(resolved.secrets.is_empty());
    }

    #[test]
    fn problems_name_the_reference_and_why() {
        let error = |text| resolve(text, &Fake).unwrap_err();
        assert_eq!(
            error("${env:NOPE}"),
            "refers to `${env:NOPE}`, but environment variable NOPE is not set"
        );
        assert_eq!(
            error("x${file:/nope}"),
            "refers to `${file:/nope}`, but file /nope cannot be read: No such file or directory (os error 2)"
        );
        assert_eq!(
            error("${vault:a/b}"),
            "has the reference `${vault:a/b}`, which is neither `${env:NAME}` nor `${file:PATH}` (write `$${` for a literal `${`)"
        );
        assert_eq!(
            error("${env:}"),
            "has the reference `${env:}`, which is neither `${env:NAME}` nor `${file:PATH}` (write `$${` for a literal `${`)"
        );
        assert_eq!(
            error("${env:PASSWORD"),
            "has an unterminated reference `${env:PASSWORD`: it must end with `}` (write `$${` for a literal `${`)"
        );
    }
}
