//! Report templates: TOML files shipped in `assets/templates` (CT chest, CT abdomen/pelvis,
//! CT head, MR brain, MR lumbar spine). A field is text in square brackets, `[liver]`; the
//! dictated text replaces it ("next field" moves to the next one), and signing is refused while
//! one is left ([`super::checks`]).

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    pub id: String,
    pub title: String,
    pub modality: String,
    pub findings: String,
    pub impression: String,
}

const SHIPPED: [(&str, &str); 5] = [
    (
        "ct_chest.toml",
        include_str!("../../assets/templates/ct_chest.toml"),
    ),
    (
        "ct_abdomen_pelvis.toml",
        include_str!("../../assets/templates/ct_abdomen_pelvis.toml"),
    ),
    (
        "ct_head.toml",
        include_str!("../../assets/templates/ct_head.toml"),
    ),
    (
        "mr_brain.toml",
        include_str!("../../assets/templates/mr_brain.toml"),
    ),
    (
        "mr_lumbar_spine.toml",
        include_str!("../../assets/templates/mr_lumbar_spine.toml"),
    ),
];

/// The shipped templates (a broken one is logged and left out).
pub fn templates() -> Vec<Template> {
    SHIPPED
        .iter()
        .filter_map(|(name, text)| match toml::from_str::<Template>(text) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::error!("template {name}: {e}");
                None
            }
        })
        .collect()
}

/// The fields left in `text`: each `[name]` with its byte range, in order. A bracket pair
/// spanning a line break is not a field.
pub fn fields_in(text: &str) -> Vec<(String, std::ops::Range<usize>)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match c {
            '[' => start = Some(i),
            ']' => {
                if let Some(s) = start.take() {
                    let name = &text[s + 1..i];
                    if !name.trim().is_empty() {
                        out.push((name.trim().to_string(), s..i + 1));
                    }
                }
            }
            '\n' => start = None,
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_template_parses_and_has_fields() {
        let all = templates();
        let ids: Vec<&str> = all.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "ct-chest",
                "ct-abdomen-pelvis",
                "ct-head",
                "mr-brain",
                "mr-lumbar-spine"
            ]
        );
        for t in &all {
            assert!(fields_in(&t.findings).len() >= 5, "{}", t.id);
            assert_eq!(fields_in(&t.impression)[0].0, "impression");
        }
    }

    #[test]
    fn fields_are_found_with_their_ranges() {
        let text = "Liver: [liver]\nSpleen: normal. [ ] [a\nb]";
        let f = fields_in(text);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].0, "liver");
        assert_eq!(&text[f[0].1.clone()], "[liver]");
    }
}
