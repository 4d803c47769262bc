//! The radiologist's saved macros: named texts that "insert macro NAME" (or the report panel's
//! Insert button) puts into the report, e.g. "normal chest" for a normal-chest paragraph.
//!
//! Each macro is one UTF-8 file `NAME.txt` in a folder (by default `macros` in the data
//! folder), so they can be written, copied between workstations and backed up with ordinary
//! tools. Names are what is said: lower case letters, digits, spaces and hyphens.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The default macro folder.
pub fn default_dir() -> PathBuf {
    crate::data_dir().join("macros")
}

/// A macro name as it is said and stored, or why it cannot be one.
pub fn normalise_name(name: &str) -> Result<String, String> {
    let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
    let name = name.to_lowercase();
    if name.is_empty() {
        return Err("a macro needs a name".into());
    }
    if name.chars().count() > 60 {
        return Err("a macro name has at most 60 characters".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_alphanumeric() || *c == ' ' || *c == '-'))
    {
        return Err(format!(
            "a macro name is said: letters, digits, spaces and hyphens only (not {c:?})"
        ));
    }
    Ok(name)
}

/// Every macro in `dir` (name -> text), and a message per file that could not be read. A
/// missing folder is no macros.
pub fn load(dir: &Path) -> (BTreeMap<String, String>, Vec<String>) {
    let mut macros = BTreeMap::new();
    let mut problems = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (macros, problems);
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("txt") {
            continue;
        }
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            problems.push(format!("{}: the name is not UTF-8", path.display()));
            continue;
        };
        let name = match normalise_name(stem) {
            Ok(n) => n,
            Err(e) => {
                problems.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                macros.insert(name, text.trim().to_string());
            }
            Err(e) => problems.push(format!("{}: {e}", path.display())),
        }
    }
    (macros, problems)
}

/// Save (or replace) macro `name` in `dir`, written whole (a temporary file renamed into
/// place); returns the stored name.
pub fn save(dir: &Path, name: &str, text: &str) -> Result<String, String> {
    let name = normalise_name(name)?;
    if text.trim().is_empty() {
        return Err(format!("macro \"{name}\" has no text"));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join(format!("{name}.txt"));
    let tmp = dir.join(format!(".{name}.txt.tmp"));
    std::fs::write(&tmp, text.trim()).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(name)
}

/// Delete macro `name` from `dir`.
pub fn delete(dir: &Path, name: &str) -> Result<(), String> {
    let name = normalise_name(name)?;
    let path = dir.join(format!("{name}.txt"));
    std::fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macros_are_saved_loaded_and_deleted_by_spoken_name() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(&dir.path().join("none")).0.len(), 0);
        let name = save(dir.path(), "  Normal   Chest ", "Lungs are clear.\n").unwrap();
        assert_eq!(name, "normal chest");
        std::fs::write(dir.path().join("bad_name!.txt"), "x").unwrap();
        std::fs::write(dir.path().join("notes.md"), "not a macro").unwrap();
        let (macros, problems) = load(dir.path());
        assert_eq!(
            macros,
            BTreeMap::from([("normal chest".to_string(), "Lungs are clear.".to_string())])
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("bad_name!"));
        assert!(save(dir.path(), "a/b", "x").is_err());
        assert!(save(dir.path(), "empty", "  ").is_err());
        delete(dir.path(), "Normal chest").unwrap();
        assert!(load(dir.path()).0.is_empty());
    }
}
