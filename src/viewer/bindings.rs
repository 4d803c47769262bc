//! Keyboard bindings: one table of every action and its keys, shown by `?` in the app.
//! Keys are egui key names ("ArrowDown", "PageUp", "1", "I", "?"), so this module stays
//! free of the UI toolkit.

use serde::Serialize;

/// What a key does in a viewport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Action {
    NextSlice,
    PreviousSlice,
    NextPage,
    PreviousPage,
    FirstSlice,
    LastSlice,
    /// Window presets 1-8 in `render::voi::PRESETS` order; 0 is the file's own window.
    Preset(u8),
    FileWindow,
    Invert,
    RotateClockwise,
    FlipHorizontal,
    FlipVertical,
    Fit,
    OneToOne,
    Reset,
    ToggleCine,
    ShowBindings,
    PlaneAxial,
    PlaneCoronal,
    PlaneSagittal,
    /// The stack's own plane, as acquired (a tilted or oblique stack's slices).
    PlaneNative,
    /// Cine frame rate up / down.
    CineFaster,
    CineSlower,
    LayoutOne,
    LayoutOneByTwo,
    LayoutTwoByTwo,
    /// Axial, coronal and sagittal with crosshairs.
    LayoutMpr,
}

impl Action {
    /// Every action, for the settings file and the key table.
    pub fn all() -> Vec<Action> {
        let mut v = vec![
            Action::NextSlice,
            Action::PreviousSlice,
            Action::NextPage,
            Action::PreviousPage,
            Action::FirstSlice,
            Action::LastSlice,
        ];
        v.extend((1..=8).map(Action::Preset));
        v.extend([
            Action::FileWindow,
            Action::Invert,
            Action::RotateClockwise,
            Action::FlipHorizontal,
            Action::FlipVertical,
            Action::Fit,
            Action::OneToOne,
            Action::Reset,
            Action::ToggleCine,
            Action::CineFaster,
            Action::CineSlower,
            Action::ShowBindings,
            Action::PlaneAxial,
            Action::PlaneCoronal,
            Action::PlaneSagittal,
            Action::PlaneNative,
            Action::LayoutOne,
            Action::LayoutOneByTwo,
            Action::LayoutTwoByTwo,
            Action::LayoutMpr,
        ]);
        v
    }

    /// The action's name in the settings file (`next_slice`, `preset_3`, `layout_mpr`).
    pub fn name(self) -> String {
        match self {
            Action::Preset(n) => format!("preset_{n}"),
            other => {
                // CamelCase variant name -> snake_case.
                let mut out = String::new();
                for (i, c) in format!("{other:?}").chars().enumerate() {
                    if c.is_ascii_uppercase() {
                        if i > 0 {
                            out.push('_');
                        }
                        out.push(c.to_ascii_lowercase());
                    } else {
                        out.push(c);
                    }
                }
                out
            }
        }
    }

    pub fn from_name(name: &str) -> Option<Action> {
        Action::all().into_iter().find(|a| a.name() == name)
    }

    pub fn describe(self) -> String {
        match self {
            Action::NextSlice => "next slice".into(),
            Action::PreviousSlice => "previous slice".into(),
            Action::NextPage => "10 slices on".into(),
            Action::PreviousPage => "10 slices back".into(),
            Action::FirstSlice => "first slice".into(),
            Action::LastSlice => "last slice".into(),
            Action::Preset(n) => crate::render::voi::PRESETS
                .get(usize::from(n).saturating_sub(1))
                .map(|p| format!("window preset: {}", p.0))
                .unwrap_or_else(|| "window preset".into()),
            Action::FileWindow => "the file's windows in turn".into(),
            Action::Invert => "invert grey scale".into(),
            Action::RotateClockwise => "rotate 90 degrees clockwise".into(),
            Action::FlipHorizontal => "flip left-right".into(),
            Action::FlipVertical => "flip top-bottom".into(),
            Action::Fit => "fit to viewport".into(),
            Action::OneToOne => "one image pixel per screen pixel".into(),
            Action::Reset => "reset zoom, pan, rotation, flips".into(),
            Action::ToggleCine => "cine on/off".into(),
            Action::CineFaster => "cine faster".into(),
            Action::CineSlower => "cine slower".into(),
            Action::ShowBindings => "show this table".into(),
            Action::PlaneAxial => "axial plane".into(),
            Action::PlaneCoronal => "coronal plane".into(),
            Action::PlaneSagittal => "sagittal plane".into(),
            Action::PlaneNative => "the series' own plane (as acquired)".into(),
            Action::LayoutOne => "one viewport".into(),
            Action::LayoutOneByTwo => "two viewports side by side".into(),
            Action::LayoutTwoByTwo => "four viewports".into(),
            Action::LayoutMpr => "MPR: axial, coronal, sagittal with crosshairs".into(),
        }
    }
}

/// The default bindings: (key name, action). Mouse: wheel or right-drag scrolls, left-drag
/// windows, middle-drag pans, ctrl+wheel zooms.
pub fn default_bindings() -> Vec<(&'static str, Action)> {
    vec![
        ("ArrowDown", Action::NextSlice),
        ("ArrowRight", Action::NextSlice),
        ("ArrowUp", Action::PreviousSlice),
        ("ArrowLeft", Action::PreviousSlice),
        ("PageDown", Action::NextPage),
        ("PageUp", Action::PreviousPage),
        ("Home", Action::FirstSlice),
        ("End", Action::LastSlice),
        ("1", Action::Preset(1)),
        ("2", Action::Preset(2)),
        ("3", Action::Preset(3)),
        ("4", Action::Preset(4)),
        ("5", Action::Preset(5)),
        ("6", Action::Preset(6)),
        ("7", Action::Preset(7)),
        ("8", Action::Preset(8)),
        ("0", Action::FileWindow),
        ("I", Action::Invert),
        ("R", Action::RotateClockwise),
        ("H", Action::FlipHorizontal),
        ("V", Action::FlipVertical),
        ("F", Action::Fit),
        ("9", Action::OneToOne),
        ("Escape", Action::Reset),
        ("C", Action::ToggleCine),
        ("Plus", Action::CineFaster),
        ("Minus", Action::CineSlower),
        ("?", Action::ShowBindings),
        ("A", Action::PlaneAxial),
        ("K", Action::PlaneCoronal),
        ("S", Action::PlaneSagittal),
        ("O", Action::PlaneNative),
        ("N", Action::LayoutOne),
        ("T", Action::LayoutOneByTwo),
        ("Q", Action::LayoutTwoByTwo),
        ("M", Action::LayoutMpr),
    ]
}

/// The key table with a settings file's `[keys]` applied, and what in the file could not be
/// applied as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// (key, action), keys by their canonical names.
    pub bindings: Vec<(String, Action)>,
    /// Each in words: a name that is no key, a key given to two actions, an action left
    /// without a key by keys given to others.
    pub problems: Vec<String>,
}

/// Apply the `[keys]` table of a settings file: each named action gets exactly the keys listed
/// (an empty list unbinds it); actions not named keep their defaults, except on a key the
/// file gives to another action (one key never does two things). Keys are compared by what
/// they are, not how they are written: `canonical` gives a key name's one spelling (the
/// toolkit's: "r" and "R" are one key, "Down" is "ArrowDown"), or none for a name that is no
/// key. Unknown action names are errors that name them; a key named twice goes to the first
/// action (in name order) and the second is said.
pub fn with_overrides(
    defaults: Vec<(&'static str, Action)>,
    overrides: &std::collections::BTreeMap<String, Vec<String>>,
    canonical: impl Fn(&str) -> Option<String>,
) -> Result<Applied, String> {
    let mut problems = Vec::new();
    let mut named: Vec<(Action, Vec<String>)> = Vec::new();
    let mut given: Vec<(String, Action)> = Vec::new();
    for (name, keys) in overrides {
        let action = Action::from_name(name).ok_or_else(|| {
            format!("settings: unknown action {name:?} (see the key table, `?`, for names)")
        })?;
        let mut own = Vec::new();
        for written in keys {
            let Some(key) = canonical(written) else {
                problems.push(format!("settings: {written:?} is not a key name ({name})"));
                continue;
            };
            if let Some((_, first)) = given.iter().find(|(k, _)| *k == key) {
                if *first != action {
                    problems.push(format!(
                        "settings: {key} is given to both {} and {name}: it does {}",
                        first.name(),
                        first.name()
                    ));
                }
                continue;
            }
            given.push((key.clone(), action));
            own.push(key);
        }
        named.push((action, own));
    }
    let mut bindings: Vec<(String, Action)> = Vec::new();
    let mut lost: Vec<(Action, String, Action)> = Vec::new();
    for (written, action) in defaults {
        let key = canonical(written).unwrap_or_else(|| written.to_string());
        if named.iter().any(|(n, _)| *n == action) {
            continue;
        }
        match given.iter().find(|(k, _)| *k == key) {
            Some((_, other)) => lost.push((action, key, *other)),
            None => bindings.push((key, action)),
        }
    }
    // A default action whose every key went to another, and that the file does not name
    // (said once, with the first key it lost).
    let mut keyless: Vec<Action> = Vec::new();
    for (action, key, other) in &lost {
        if !bindings.iter().any(|(_, a)| a == action) && !keyless.contains(action) {
            keyless.push(*action);
            problems.push(format!(
                "settings: {} has no key ({key} now does {})",
                action.name(),
                other.name()
            ));
        }
    }
    for (action, keys) in named {
        bindings.extend(keys.into_iter().map(|k| (k, action)));
    }
    Ok(Applied { bindings, problems })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for a in Action::all() {
            assert_eq!(Action::from_name(&a.name()), Some(a), "{}", a.name());
        }
        assert_eq!(Action::NextSlice.name(), "next_slice");
        assert_eq!(Action::Preset(3).name(), "preset_3");
        assert_eq!(Action::LayoutMpr.name(), "layout_mpr");
    }

    #[test]
    fn overrides_replace_only_the_named_actions() {
        let mut o = std::collections::BTreeMap::new();
        o.insert("next_slice".to_string(), vec!["J".to_string()]);
        o.insert("invert".to_string(), vec![]);
        let b = with_overrides(default_bindings(), &o, same)
            .unwrap()
            .bindings;
        let keys_of = |a: Action| -> Vec<&str> {
            b.iter()
                .filter(|(_, x)| *x == a)
                .map(|(k, _)| k.as_str())
                .collect()
        };
        assert_eq!(keys_of(Action::NextSlice), vec!["J"]);
        assert!(keys_of(Action::Invert).is_empty());
        assert_eq!(keys_of(Action::PreviousSlice), vec!["ArrowUp", "ArrowLeft"]);
        // A key given to another action leaves its default action.
        o.insert("invert".to_string(), vec!["ArrowUp".to_string()]);
        let b = with_overrides(default_bindings(), &o, same)
            .unwrap()
            .bindings;
        let on_up: Vec<Action> = b
            .iter()
            .filter(|(k, _)| k == "ArrowUp")
            .map(|(_, a)| *a)
            .collect();
        assert_eq!(on_up, vec![Action::Invert]);
        o.insert("warp_drive".to_string(), vec!["W".to_string()]);
        assert!(with_overrides(default_bindings(), &o, same).is_err());
    }

    /// Every name as written is its own key (the tests above).
    fn same(name: &str) -> Option<String> {
        Some(name.to_string())
    }

    /// Key names as the app's toolkit reads them: either case of a letter, "Down" for
    /// "ArrowDown"; "Nope" is no key.
    fn toolkit(name: &str) -> Option<String> {
        match name {
            "Down" | "ArrowDown" => Some("ArrowDown".into()),
            "Nope" => None,
            n if n.len() == 1 => Some(n.to_uppercase()),
            n => Some(n.to_string()),
        }
    }

    /// Keys are compared as keys: "r" takes R from rotate (which is then said to have no
    /// key), "Down" takes ArrowDown from next_slice (which keeps its other key); a key
    /// named for two actions does the first and the second is said; a name that is no key
    /// is said.
    #[test]
    fn remapped_keys_never_do_two_things_silently() {
        let mut o = std::collections::BTreeMap::new();
        o.insert("flip_horizontal".to_string(), vec!["r".to_string()]);
        o.insert(
            "invert".to_string(),
            vec!["Down".to_string(), "J".to_string()],
        );
        o.insert(
            "flip_vertical".to_string(),
            vec!["j".to_string(), "Nope".to_string()],
        );
        let applied = with_overrides(default_bindings(), &o, toolkit).unwrap();
        let on = |key: &str| -> Vec<Action> {
            applied
                .bindings
                .iter()
                .filter(|(k, _)| k == key)
                .map(|(_, a)| *a)
                .collect()
        };
        assert_eq!(on("R"), [Action::FlipHorizontal]);
        assert_eq!(on("ArrowDown"), [Action::Invert]);
        assert_eq!(on("J"), [Action::FlipVertical]);
        assert!(on("r").is_empty() && on("Down").is_empty());
        assert!(
            applied
                .bindings
                .contains(&("ArrowRight".to_string(), Action::NextSlice))
        );
        assert_eq!(
            applied.problems,
            [
                "settings: \"Nope\" is not a key name (flip_vertical)",
                "settings: J is given to both flip_vertical and invert: it does flip_vertical",
                "settings: rotate_clockwise has no key (R now does flip_horizontal)",
            ]
        );
    }
}
