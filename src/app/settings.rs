//! The user's settings file: `$OVERREAD_CONFIG`, else `$XDG_CONFIG_HOME/overread/settings.toml`,
//! else `~/.config/overread/settings.toml`. Absent is fine (defaults); broken is reported on
//! screen and the defaults are used.
//!
//! ```toml
//! cine_fps = 15
//! dictation_model = "/opt/models/ggml-base.en.bin"
//! audio_device = "alsa:default"
//! dictation_key = "F4"              # held down: dictate (push-to-talk)
//! dictation_mouse_button = "Extra1" # a mouse button that does the same
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
    /// The audio output unsure words are replayed on (else the default output).
    #[serde(default)]
    pub audio_output: Option<String>,
    /// Push-to-talk key, an egui key name ("F4" by default; "" for none): held down, it
    /// records; let go, it transcribes.
    #[serde(default)]
    pub dictation_key: Option<String>,
    /// Push-to-talk mouse button: "Middle", "Extra1" or "Extra2" (none by default).
    #[serde(default)]
    pub dictation_mouse_button: Option<String>,
    /// Words recognised with less confidence than this are marked to confirm (0.5).
    #[serde(default)]
    pub unsure_below: Option<f32>,
    /// The folder of saved macros (default: `macros` in the data folder).
    #[serde(default)]
    pub macros_dir: Option<PathBuf>,
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
    /// Where unsigned drafts are kept (default: `drafts` in the data folder).
    #[serde(default)]
    pub drafts_dir: Option<PathBuf>,
    /// The case-server user signing in (filled into the sign form).
    #[serde(default)]
    pub user: Option<String>,
    /// A bearer token for DICOMweb study URLs, handed over by the program that starts the
    /// window (never read from the file; else `OVERREAD_DICOMWEB_TOKEN` or a login from
    /// `OVERREAD_USER`/`OVERREAD_PASSWORD`).
    #[serde(skip)]
    pub dicomweb_token: Option<String>,
}

/// The push-to-talk key when the settings name none.
pub const DEFAULT_DICTATION_KEY: &str = "F4";

impl Settings {
    /// The push-to-talk key and mouse button, or why a name is not one.
    pub fn push_to_talk(
        &self,
    ) -> Result<
        (
            Option<eframe::egui::Key>,
            Option<eframe::egui::PointerButton>,
        ),
        String,
    > {
        use eframe::egui::{Key, PointerButton};
        let key = match self
            .dictation_key
            .as_deref()
            .unwrap_or(DEFAULT_DICTATION_KEY)
        {
            "" => None,
            name => Some(
                Key::from_name(name)
                    .ok_or_else(|| format!("dictation_key: no key named {name:?}"))?,
            ),
        };
        let button = match self.dictation_mouse_button.as_deref() {
            None | Some("") => None,
            Some("Middle") => Some(PointerButton::Middle),
            Some("Extra1") => Some(PointerButton::Extra1),
            Some("Extra2") => Some(PointerButton::Extra2),
            Some(other) => {
                return Err(format!(
                    "dictation_mouse_button: {other:?} is not Middle, Extra1 or Extra2"
                ));
            }
        };
        Ok((key, button))
    }

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

    #[test]
    fn push_to_talk_defaults_to_f4_and_names_are_checked() {
        use eframe::egui::{Key, PointerButton};
        assert_eq!(
            Settings::default().push_to_talk(),
            Ok((Some(Key::F4), None))
        );
        let s =
            Settings::parse("dictation_key = \"\"\ndictation_mouse_button = \"Extra2\"\n").unwrap();
        assert_eq!(s.push_to_talk(), Ok((None, Some(PointerButton::Extra2))));
        let s = Settings::parse("dictation_key = \"Pedal\"").unwrap();
        assert!(s.push_to_talk().unwrap_err().contains("Pedal"));
    }
}
