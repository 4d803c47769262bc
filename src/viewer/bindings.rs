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
    LayoutOne,
    LayoutOneByTwo,
    LayoutTwoByTwo,
    /// Axial, coronal and sagittal with crosshairs.
    LayoutMpr,
}

impl Action {
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
            Action::FileWindow => "window from the file".into(),
            Action::Invert => "invert grey scale".into(),
            Action::RotateClockwise => "rotate 90 degrees clockwise".into(),
            Action::FlipHorizontal => "flip left-right".into(),
            Action::FlipVertical => "flip top-bottom".into(),
            Action::Fit => "fit to viewport".into(),
            Action::OneToOne => "one image pixel per screen pixel".into(),
            Action::Reset => "reset zoom, pan, rotation, flips".into(),
            Action::ToggleCine => "cine on/off".into(),
            Action::ShowBindings => "show this table".into(),
            Action::PlaneAxial => "axial plane".into(),
            Action::PlaneCoronal => "coronal plane".into(),
            Action::PlaneSagittal => "sagittal plane".into(),
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
        ("?", Action::ShowBindings),
        ("A", Action::PlaneAxial),
        ("K", Action::PlaneCoronal),
        ("S", Action::PlaneSagittal),
        ("N", Action::LayoutOne),
        ("T", Action::LayoutOneByTwo),
        ("Q", Action::LayoutTwoByTwo),
        ("M", Action::LayoutMpr),
    ]
}
