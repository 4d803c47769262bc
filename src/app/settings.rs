//! The user's settings file: `$OVERREAD_CONFIG`, else `$XDG_CONFIG_HOME/overread/settings.toml`,
//! else `~/.config/overread/settings.toml`. Absent is fine (defaults); broken is reported on
//! screen and the defaults are used.
//!
//! ```toml
//! cine_fps = 15
//! dictation_model = "/opt/models/ggml-base.en.bin"
//! audio_device = "alsa:default"
//! [keys]
//! next_slice = ["ArrowDown", "J"]   # every key an action should have
//! invert = []                       # unbound
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Action name -> keys (egui key names: "ArrowDown", "J", "5", "PageUp", "?").
    #[serde(default)]
    pub keys: BTreeMap<String, Vec<String>>,
    /// Cine frame rate at start, frames per second.
    #[serde(default)]
    pub cine_fps: Option<f64>,
    /// The whisper.cpp model for dictation (else `OVERREAD_WHISPER_MODEL`, else the data
    /// folder's `models`).
    #[serde(default)]
    pub dictation_model: Option<PathBuf>,
    /// The audio input for dictation, as `overread record --list` names it (else the
    /// default input).
    #[serde(default)]
    pub audio_device: Option<String>,
    /// The case server signed reports go to, `https://host:port`.
    #[serde(default)]
    pub case_server: Option<String>,
    /// A CA certificate to trust for the case server (a self-signed one).
    #[serde(default)]
    pub case_server_ca: Option<PathBuf>,
    /// The sealed signing key (`overread key new`).
    #[serde(default)]
    pub signing_key: Option<PathBuf>,
    /// The outbox folder (default: `outbox` in the data folder).
    #[serde(default)]
    pub outbox: Option<PathBuf>,
    /// The case-server user signing in (filled into the sign form).
    #[serde(default)]
    pub user: Option<String>,
    /// A bearer token for DICOMweb study URLs, handed over by the program that starts the
    /// window (never read from the file; else `OVERREAD_DICOMWEB_TOKEN` or a login from
    /// `OVERREAD_USER`/`OVERREAD_PASSWORD`).
    #[serde(skip)]
    pub dicomweb_token: Option<String>,
}

impl Settings {
    pub fn path() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os("OVERREAD_CONFIG") {
            return Some(PathBuf::from(p));
        }
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
        Some(base.join("overread").join("settings.toml"))
    }

    pub fn parse(text: &str) -> Result<Settings, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The settings, and a message when the file exists but cannot be used.
    pub fn load() -> (Settings, Option<String>) {
        let Some(path) = Self::path() else {
            return (Settings::default(), None);
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => match Self::parse(&text) {
                Ok(s) => (s, None),
                Err(e) => (
                    Settings::default(),
                    Some(format!("{}: {e} (defaults used)", path.display())),
                ),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Settings::default(), None),
            Err(e) => (
                Settings::default(),
                Some(format!("{}: {e} (defaults used)", path.display())),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keys_and_refuses_unknown_fields() {
        let s = Settings::parse("cine_fps = 15\n[keys]\nnext_slice = [\"J\"]\n");
        assert_eq!(s.as_ref().map(|s| s.cine_fps), Ok(Some(15.0)));
        assert!(Settings::parse("colour = \"red\"").is_err());
        assert_eq!(Settings::parse(""), Ok(Settings::default()));
    }
}
