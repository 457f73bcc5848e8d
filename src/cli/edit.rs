//! Key lifecycle edits on a plugin configuration file: the file is read,
//! checked with the filter's parser, changed as a tree that keeps every
//! other member and its order, written in the [`pretty`](super::pretty)
//! layout, checked again, and only then put in place (temporary file in the
//! same folder, then rename).

use super::pretty::pretty;
use crate::config;
use crate::json::Node;
use crate::policy::Policy;
use crate::shape::ConfigError;
use std::borrow::Cow;
use std::path::Path;

/// Why an edit was not made.
#[derive(Debug)]
pub enum EditError {
    /// Reading or writing the file.
    Io(String),
    /// The file as it is, or the result, is not a valid configuration.
    Invalid(Vec<ConfigError>),
    /// The request does not fit the file (unknown or existing id, ...).
    Refused(String),
}

/// An object's members, in document order.
pub type Members<'a> = Vec<(Cow<'a, str>, Node<'a>)>;

/// A plugin configuration file, parsed.
pub struct ConfigFile {
    pub text: String,
}

impl ConfigFile {
    pub fn read(path: &Path) -> Result<ConfigFile, EditError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| EditError::Io(format!("{}: cannot read: {e}", path.display())))?;
        config::compile(text.as_bytes()).map_err(EditError::Invalid)?;
        Ok(ConfigFile { text })
    }

    pub fn policy(&self) -> Result<Policy, EditError> {
        config::compile(self.text.as_bytes()).map_err(EditError::Invalid)
    }

    /// Applies `change` to the tree, checks the result and returns its text.
    pub fn edit(
        &self,
        change: impl for<'a> FnOnce(&mut Members<'a>) -> Result<(), EditError>,
    ) -> Result<String, EditError> {
        let mut node = Node::parse(self.text.as_bytes())
            .map_err(|e| EditError::Io(format!("not JSON: {e}")))?;
        let Node::Object(members) = &mut node else {
            return Err(EditError::Refused(
                "the configuration is not an object".into(),
            ));
        };
        change(members)?;
        let text = pretty(&node)
            .ok_or_else(|| EditError::Refused("the configuration holds a number".into()))?;
        config::compile(text.as_bytes()).map_err(EditError::Invalid)?;
        Ok(text)
    }
}

/// The `keys` list, created (at the end) when absent; `None` when it is
/// not a list (never in a configuration that compiled).
pub fn keys<'m, 'a>(
    members: &'m mut Vec<(Cow<'a, str>, Node<'a>)>,
) -> Option<&'m mut Vec<Node<'a>>> {
    let at = match members.iter().position(|(n, _)| n == "keys") {
        Some(at) => at,
        None => {
            members.push(("keys".into(), Node::Array(Vec::new())));
            members.len() - 1
        }
    };
    match members.get_mut(at) {
        Some((_, Node::Array(items))) => Some(items),
        _ => None,
    }
}

/// The members of the key whose `id` is `id`.
pub fn key_mut<'m, 'a>(
    members: &'m mut Vec<(Cow<'a, str>, Node<'a>)>,
    id: &str,
) -> Option<&'m mut Vec<(Cow<'a, str>, Node<'a>)>> {
    keys(members)?.iter_mut().find_map(|k| match k {
        Node::Object(m) if member(m, "id").is_some_and(|v| v == id) => Some(m),
        _ => None,
    })
}

/// A string member's value.
pub fn member<'m>(members: &'m [(Cow<str>, Node)], name: &str) -> Option<&'m str> {
    members.iter().find_map(|(n, v)| match v {
        Node::String(s) if n == name => Some(&**s),
        _ => None,
    })
}

/// Sets a member in place, or appends it.
pub fn set<'a>(members: &mut Vec<(Cow<'a, str>, Node<'a>)>, name: &'static str, value: Node<'a>) {
    match members.iter_mut().find(|(n, _)| n == name) {
        Some((_, v)) => *v = value,
        None => members.push((name.into(), value)),
    }
}

pub fn text(s: impl Into<String>) -> Node<'static> {
    Node::String(Cow::Owned(s.into()))
}

/// Writes `text` to `path` atomically: a temporary file in the same folder
/// (so on the same file system), flushed, then renamed over `path`. The
/// file keeps its permissions.
pub fn write_atomically(path: &Path, text: &str) -> Result<(), EditError> {
    let io =
        |what: &str, e: std::io::Error| EditError::Io(format!("{}: {what}: {e}", path.display()));
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map_or_else(|| "config".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.nected-key-{}.tmp", std::process::id()));
    let result = (|| {
        std::fs::write(&tmp, text).map_err(|e| io("cannot write a temporary file", e))?;
        if let Ok(meta) = std::fs::metadata(path) {
            let _ = std::fs::set_permissions(&tmp, meta.permissions());
        }
        if let Ok(f) = std::fs::File::open(&tmp) {
            let _ = f.sync_all();
        }
        std::fs::rename(&tmp, path).map_err(|e| io("cannot replace", e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_edit_keeps_other_members_and_their_order() {
        let file = ConfigFile {
            text:
                r#"{"mode":"report","keys":[{"sha256":"@","id":"a","client":"c"}],"header":"x-k"}"#
                    .replace('@', &"ab".repeat(32)),
        };
        let out = file
            .edit(|m| {
                let key = key_mut(m, "a").unwrap();
                set(key, "revoked", Node::Bool(true));
                Ok(())
            })
            .unwrap();
        let digest = "ab".repeat(32);
        assert_eq!(
            out,
            format!(
                "{{\n  \"mode\": \"report\",\n  \"keys\": [\n    {{ \"sha256\": \"{digest}\", \"id\": \"a\", \"client\": \"c\", \"revoked\": true }}\n  ],\n  \"header\": \"x-k\"\n}}\n"
            )
        );
    }

    #[test]
    fn an_edit_that_breaks_the_config_is_refused() {
        let file = ConfigFile { text: "{}".into() };
        let out = file.edit(|m| {
            keys(m)
                .unwrap()
                .push(Node::Object(vec![("id".into(), text("a"))]));
            Ok(())
        });
        assert!(matches!(out, Err(EditError::Invalid(_))), "{out:?}");
        // A missing `keys` member is created.
        let out = file
            .edit(|m| {
                keys(m);
                Ok(())
            })
            .unwrap();
        assert_eq!(out, "{\n  \"keys\": []\n}\n");
    }

    #[test]
    fn atomic_write_replaces_the_file() {
        let dir = std::env::temp_dir().join(format!("nka-edit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.json");
        std::fs::write(&path, "old").unwrap();
        write_atomically(&path, "new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary file left"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
