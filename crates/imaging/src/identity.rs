//! Patient identity kept out of logs.
//!
//! Identifiers (patient name, patient ID, birth date) live in [`Phi`], whose `Debug` and
//! `Display` print `<redacted>`. The screen and exported files may show them through
//! [`Phi::reveal`]; a log line or an error message never can by accident.

/// A protected health information value: shown on screen, never in logs.
///
/// Serializes as `"<redacted>"` too: JSON reports (`overread scan --json`) go to files and
/// pipes that are as durable as logs. Code that must export identity calls [`Phi::reveal`].
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Phi(String);

impl serde::Serialize for Phi {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.0.is_empty() { "" } else { "<redacted>" })
    }
}

impl Phi {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The real value, for the screen or an export the user asked for. Never log it.
    pub fn reveal(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Phi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::fmt::Display for Phi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::Phi;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let phi = Phi::new("DOE^JANE");
        assert_eq!(format!("{phi}"), "<redacted>");
        assert_eq!(format!("{phi:?}"), "<redacted>");
        assert_eq!(phi.reveal(), "DOE^JANE");
        assert_eq!(
            serde_json::to_string(&phi).ok().as_deref(),
            Some("\"<redacted>\"")
        );
    }
}
