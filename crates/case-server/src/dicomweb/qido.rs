//! QIDO-RS (PS3.18 10.6): search for studies, series and instances.
//!
//! Matching (PS3.4 C.2.2.2): single value; a comma-separated UID list; `*` and `?` wildcards
//! (Patient's and Referring Physician's Names ignoring ASCII case; a patient's name of several
//! component groups matched on any one of them); date and time ranges `A-B`,
//! `A-`, `-B` (a time given to the hour or minute stands for all of it; an end before its start
//! is refused). Keys are keywords or tags (`PatientID` or
//! `00100020`). `limit`, `offset`, `includefield` and `fuzzymatching` (names match ignoring
//! case either way) are accepted; any other key is refused by name rather than silently
//! ignored.
//!
//! Answers hold the attributes PS3.18 (Table 6.7.1-2) requires at their level, those of the
//! levels above that the path does not name, the keys matched on, and any `includefield` asks
//! for (a keyword, a tag, or `all`: every attribute of that level; one not known here is left
//! out and said in a Warning header). Attributes the `instances` columns do not hold are taken
//! from the metadata of the level's first instance (by SOP Instance UID); one asked for that
//! the files lack is sent without a value (PS3.4 C.2.2.1).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Bind, Sql, Target, audit_access, root, scope};
use crate::Server;
use crate::api::Caller;
use crate::db::Backend;
use crate::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Study,
    Series,
    Instance,
}

/// A query key: its keyword, tag, column and how it matches.
struct Key {
    keyword: &'static str,
    tag: &'static str,
    column: &'static str,
    kind: Match,
    levels: &'static [Level],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Match {
    Uid,
    Text,
    /// Case-insensitive wildcard text (descriptions).
    Name,
    /// A Person Name: as `Name`, against the whole value or any one of its component groups
    /// (alphabetic, ideographic, phonetic: "Yamada^Tarou=山田^太郎=やまだ^たろう").
    Person,
    Date,
    /// HHMMSS, a range of them, or a shorter time standing for all it covers.
    Time,
    Int,
    /// Modalities in Study: some instance of the study has this modality.
    ModalityInStudy,
}

const ALL: &[Level] = &[Level::Study, Level::Series, Level::Instance];
const SERIES_DOWN: &[Level] = &[Level::Series, Level::Instance];

const KEYS: &[Key] = &[
    Key {
        keyword: "StudyInstanceUID",
        tag: "0020000D",
        column: "study_uid",
        kind: Match::Uid,
        levels: ALL,
    },
    Key {
        keyword: "PatientID",
        tag: "00100020",
        column: "patient_id",
        kind: Match::Text,
        levels: ALL,
    },
    Key {
        keyword: "PatientName",
        tag: "00100010",
        column: "patient_name",
        kind: Match::Person,
        levels: ALL,
    },
    Key {
        keyword: "StudyDate",
        tag: "00080020",
        column: "study_date",
        kind: Match::Date,
        levels: ALL,
    },
    Key {
        keyword: "StudyTime",
        tag: "00080030",
        column: "study_time",
        kind: Match::Time,
        levels: ALL,
    },
    Key {
        keyword: "AccessionNumber",
        tag: "00080050",
        column: "accession_number",
        kind: Match::Text,
        levels: ALL,
    },
    Key {
        keyword: "StudyDescription",
        tag: "00081030",
        column: "study_description",
        kind: Match::Name,
        levels: ALL,
    },
    Key {
        keyword: "ReferringPhysicianName",
        tag: "00080090",
        column: "referring_physician",
        kind: Match::Name,
        levels: ALL,
    },
    Key {
        keyword: "StudyID",
        tag: "00200010",
        column: "study_id",
        kind: Match::Text,
        levels: ALL,
    },
    Key {
        keyword: "ModalitiesInStudy",
        tag: "00080061",
        column: "modality",
        kind: Match::ModalityInStudy,
        levels: &[Level::Study],
    },
    Key {
        keyword: "Modality",
        tag: "00080060",
        column: "modality",
        kind: Match::Text,
        levels: SERIES_DOWN,
    },
    Key {
        keyword: "SeriesInstanceUID",
        tag: "0020000E",
        column: "series_uid",
        kind: Match::Uid,
        levels: SERIES_DOWN,
    },
    Key {
        keyword: "SeriesNumber",
        tag: "00200011",
        column: "series_number",
        kind: Match::Int,
        levels: SERIES_DOWN,
    },
    Key {
        keyword: "SeriesDescription",
        tag: "0008103E",
        column: "series_description",
        kind: Match::Name,
        levels: SERIES_DOWN,
    },
    Key {
        keyword: "SOPInstanceUID",
        tag: "00080018",
        column: "sop_uid",
        kind: Match::Uid,
        levels: &[Level::Instance],
    },
    Key {
        keyword: "SOPClassUID",
        tag: "00080016",
        column: "sop_class_uid",
        kind: Match::Uid,
        levels: &[Level::Instance],
    },
    Key {
        keyword: "InstanceNumber",
        tag: "00200013",
        column: "instance_number",
        kind: Match::Int,
        levels: &[Level::Instance],
    },
];

/// `LIKE` pattern from DICOM wildcards, with `%`, `_` and `\` escaped.
fn like_pattern(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars() {
        match c {
            '*' => out.push('%'),
            '?' => out.push('_'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// A DICOM wildcard value as a SQLite GLOB pattern: `*` and `?` are the same; `[` opens a
/// character class in GLOB, so a literal one is written `[[]`.
fn glob_pattern(value: &str) -> String {
    value.replace('[', "[[]")
}

/// What `includefield` asks for beyond a level's own attributes: `all` of the level's, and
/// these tags (8 hex digits, upper case, as DICOM JSON names them). A matching key is one of
/// them (PS3.4 C.2.2.1: a key matched on is returned).
#[derive(Debug, Default)]
struct Include {
    all: bool,
    tags: BTreeSet<String>,
    /// Fields named that are neither a keyword this server knows nor a tag: left out, and
    /// said in a Warning header (a newer keyword is no reason to refuse the search).
    unknown: Vec<String>,
}

impl Include {
    /// Read one `includefield` value: comma-separated keywords, tags or `all`; a sequence's
    /// nested path (`Seq.Attr`) asks for the sequence whole.
    fn add(&mut self, value: &str) {
        for field in value.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            if field == "all" {
                self.all = true;
                continue;
            }
            let top = field.split('.').next().unwrap_or(field);
            match tag_of(top) {
                Some(tag) => {
                    self.tags.insert(tag);
                }
                None => self.unknown.push(field.chars().take(64).collect()),
            }
        }
    }
}

/// The VR a tag's attribute has, as DICOM JSON writes it ("UN" for one not in the
/// dictionary; the first of a choice, "US or SS", which an attribute without a value does
/// not decide).
fn vr_of(tag: &str) -> String {
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
    let parsed = (
        u16::from_str_radix(tag.get(..4).unwrap_or(""), 16),
        u16::from_str_radix(tag.get(4..).unwrap_or(""), 16),
    );
    let (Ok(group), Ok(element)) = parsed else {
        return "UN".into();
    };
    dicom_dictionary_std::StandardDataDictionary
        .by_tag(dicom_core::Tag(group, element))
        .map_or_else(|| "UN".into(), |e| e.vr().relaxed().to_string().to_owned())
}

/// A keyword's or a tag's DICOM JSON name ("StudyTime" or "00080030": "00080030").
fn tag_of(field: &str) -> Option<String> {
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
    if field.len() == 8 && field.chars().all(|c| c.is_ascii_hexdigit()) {
        return Some(field.to_ascii_uppercase());
    }
    let tag = dicom_dictionary_std::StandardDataDictionary
        .by_name(field)?
        .tag();
    Some(format!("{:04X}{:04X}", tag.group(), tag.element()))
}

/// Add `AND ...` for every query key; unknown keys are a 400 naming them. Gives the limit,
/// the offset and what the answers are to include.
fn filters(
    backend: Backend,
    sql: &mut Sql,
    query: &[(String, String)],
    level: Level,
) -> Result<(i64, i64, Include), ApiError> {
    let (mut limit, mut offset) = (DEFAULT_LIMIT, 0i64);
    let mut include = Include::default();
    for (name, value) in query {
        match name.as_str() {
            "limit" | "offset" => {
                let n: i64 = value.parse().ok().filter(|n| *n >= 0).ok_or_else(|| {
                    ApiError::bad_request(format!("{name} must be a whole number ≥ 0"))
                })?;
                if name == "limit" {
                    limit = n.min(MAX_LIMIT);
                } else {
                    offset = n;
                }
                continue;
            }
            "includefield" => {
                include.add(value);
                continue;
            }
            // Names already match ignoring case; nothing fuzzier is offered.
            "fuzzymatching" => continue,
            _ => {}
        }
        let key = KEYS
            .iter()
            .find(|k| k.keyword == name || k.tag.eq_ignore_ascii_case(name))
            .filter(|k| k.levels.contains(&level))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "query key {name:?} is not supported at this level; supported: {}",
                    KEYS.iter()
                        .filter(|k| k.levels.contains(&level))
                        .map(|k| k.keyword)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        include.tags.insert(key.tag.to_string());
        if value.is_empty() {
            continue; // universal match
        }
        let col = format!("instances.{}", key.column);
        match key.kind {
            Match::Uid => {
                sql.push(&format!(" AND {col} IN ("));
                for (i, uid) in value.split([',', '\\']).enumerate() {
                    if i > 0 {
                        sql.push(", ");
                    }
                    sql.text(uid.trim());
                }
                sql.push(")");
            }
            // Wildcards match case-sensitively (PS3.4 C.2.2.2.4), as the exact match does:
            // SQLite's LIKE ignores ASCII case, so SQLite takes GLOB (whose * and ? are
            // DICOM's), PostgreSQL LIKE.
            Match::Text if value.contains(['*', '?']) => match backend {
                Backend::Sqlite => {
                    sql.push(&format!(" AND {col} GLOB "));
                    sql.text(&glob_pattern(value));
                }
                Backend::Postgres => {
                    sql.push(&format!(" AND {col} LIKE "));
                    sql.text(&like_pattern(value));
                    sql.push(" ESCAPE '\\'");
                }
            },
            Match::Text => {
                sql.push(&format!(" AND {col} = "));
                sql.text(value);
            }
            // Names ignore case in ASCII letters only, on both databases: SQLite's LOWER folds
            // ASCII alone, and PostgreSQL's does too under the C collation (under the
            // database's own locale it would fold more, so one query would match differently).
            Match::Name | Match::Person => {
                let lowered = match backend {
                    Backend::Sqlite => format!("LOWER({col})"),
                    Backend::Postgres => format!("LOWER({col} COLLATE \"C\")"),
                };
                let pattern = like_pattern(&value.to_ascii_lowercase());
                // A name of several groups is matched on any one of them (PS3.4 C.2.2.2.1:
                // the key "山田*" finds "Yamada^Tarou=山田^太郎"); a key of several groups, on
                // the whole value.
                let forms = if matches!(key.kind, Match::Person) && !value.contains('=') {
                    vec![
                        pattern.clone(),
                        format!("{pattern}=%"),
                        format!("%={pattern}"),
                        format!("%={pattern}=%"),
                    ]
                } else {
                    vec![pattern]
                };
                sql.push(" AND (");
                for (i, form) in forms.iter().enumerate() {
                    if i > 0 {
                        sql.push(" OR ");
                    }
                    sql.push(&format!("{lowered} LIKE "));
                    sql.text(form);
                    sql.push(" ESCAPE '\\'");
                }
                sql.push(")");
            }
            Match::Date => {
                let bad =
                    || ApiError::bad_request(format!("{name}: expected YYYYMMDD or a range A-B"));
                let check = |d: &str| {
                    if d.is_empty() || crate::intake::parse_da(d).is_some() {
                        Ok(d.to_string())
                    } else {
                        Err(bad())
                    }
                };
                let (from, to) = match value.split_once('-') {
                    Some((a, b)) => (check(a)?, check(b)?),
                    None => (check(value)?, check(value)?),
                };
                if !from.is_empty() {
                    sql.push(&format!(" AND {col} >= "));
                    sql.text(&from);
                }
                if !to.is_empty() {
                    sql.push(&format!(" AND {col} <= "));
                    sql.text(&to);
                }
            }
            Match::Time => {
                let (from, to) = time_range(value).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "{name}: expected a time HHMMSS (or HH, HHMM; a fraction after the \
                         seconds ignored) or a range A-B, A-, -B whose end is not before its start"
                    ))
                })?;
                if let Some(from) = from {
                    sql.push(&format!(" AND {col} >= "));
                    sql.text(&from);
                }
                if let Some(to) = to {
                    sql.push(&format!(" AND {col} <= "));
                    sql.text(&to);
                }
                // A time of none ('') matches no time range.
                sql.push(&format!(" AND {col} <> ''"));
            }
            Match::Int => {
                let n: i64 = value
                    .parse()
                    .map_err(|_| ApiError::bad_request(format!("{name} must be a number")))?;
                sql.push(&format!(" AND {col} = "));
                sql.bind(Bind::Int(n));
            }
            Match::ModalityInStudy => {
                // The study's modalities in this case only: a study held by two cases (kept
                // from before one study, one case) must not match through the other's.
                sql.push(
                    " AND EXISTS (SELECT 1 FROM instances m WHERE m.case_id = instances.case_id \
                     AND m.study_uid = instances.study_uid AND m.modality IN (",
                );
                for (i, m) in value.split([',', '\\']).enumerate() {
                    if i > 0 {
                        sql.push(", ");
                    }
                    sql.text(m.trim());
                }
                sql.push("))");
            }
        }
    }
    Ok((limit, offset, include))
}

/// A Study Time query value as bounds on the `study_time` column (HHMMSS,
/// `intake::normalized_time`): `A-B`, `A-`, `-B` or one value; a bound given to the hour or
/// minute covers all of it ("-13" ends at 13:59:59, "1230" is 12:30:00 to 12:30:59). `None`
/// when a bound is not a time.
fn time_range(value: &str) -> Option<(Option<String>, Option<String>)> {
    let bound = |t: &str, fill: char| -> Option<Option<String>> {
        let t = t.trim().replace(':', "");
        if t.is_empty() {
            return Some(None);
        }
        // A fraction only after the seconds (PS3.5 TM: HH, HHMM, HHMMSS, HHMMSS.F...).
        let (whole, fraction) = t.split_once('.').unwrap_or((t.as_str(), ""));
        let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
        if !digits(whole) || !digits(fraction) || ![2, 4, 6].contains(&whole.len()) {
            return None;
        }
        if t.contains('.') && (whole.len() != 6 || fraction.is_empty() || fraction.len() > 6) {
            return None;
        }
        let part = |i: usize| whole.get(i..i + 2).and_then(|p| p.parse::<u32>().ok());
        let in_range = [(0, 23), (2, 59), (4, 60)]
            .iter()
            .all(|(i, max)| part(*i).is_none_or(|v| v <= *max));
        if !in_range {
            return None;
        }
        let mut out = whole.to_string();
        while out.len() < 6 {
            out.push(fill);
        }
        Some(Some(out))
    };
    let (from, to) = match value.split_once('-') {
        Some((a, b)) => (bound(a, '0')?, bound(b, '9')?),
        None => (bound(value, '0')?, bound(value, '9')?),
    };
    match (&from, &to) {
        // "-" names no time at all.
        (None, None) => None,
        // Nothing is later than its end (a range over midnight is two searches).
        (Some(a), Some(b)) if a > b => None,
        _ => Some((from, to)),
    }
}

fn text(v: &str, vr: &str) -> Value {
    if v.is_empty() {
        json!({ "vr": vr })
    } else {
        json!({ "vr": vr, "Value": [v] })
    }
}

/// A Person Name in DICOM JSON (PS3.18 F.2.2): its component groups, split at "=", as
/// Alphabetic, Ideographic and Phonetic, each one present named.
fn person(v: &str) -> Value {
    let groups: serde_json::Map<String, Value> = v
        .split('=')
        .zip(["Alphabetic", "Ideographic", "Phonetic"])
        .filter(|(group, _)| !group.is_empty())
        .map(|(group, key)| (key.to_string(), Value::from(group)))
        .collect();
    if groups.is_empty() {
        json!({ "vr": "PN" })
    } else {
        json!({ "vr": "PN", "Value": [groups] })
    }
}

fn int(v: Option<i64>, vr: &str) -> Value {
    match v {
        Some(n) => json!({ "vr": vr, "Value": [n] }),
        None => json!({ "vr": vr }),
    }
}

/// The attributes of the study level (PS3.4 C.6.2.1, the Study Root model: the Patient,
/// Patient Study and General Study modules): what `includefield=all` adds to a study.
fn study_level(tag: &str) -> bool {
    const STUDY: &[&str] = &[
        "00080020", "00080030", "00080050", "00080051", "00080090", "00080096", "00080201",
        "00081030", "00081032", "00081048", "00081049", "00081060", "00081062", "00081080",
        "00081084", "00081110", "0020000D", "00200010", "00321032", "00321033", "00321060",
        "00321064",
    ];
    tag.starts_with("0010") || STUDY.contains(&tag)
}

/// The attributes of the series level (the General Series, General Equipment and Frame of
/// Reference modules, and the performed procedure step a series records): what
/// `includefield=all` adds to a series.
fn series_level(tag: &str) -> bool {
    const SERIES: &[&str] = &[
        "00080021", "00080031", "00080060", "00080070", "00080080", "00081010", "0008103E",
        "00081040", "00081050", "00081070", "00081090", "00081111", "00180015", "00181000",
        "00181020", "00181030", "00185100", "0020000E", "00200011", "00200052", "00200060",
        "00400244", "00400245", "00400253", "00400254", "00400275",
    ];
    SERIES.contains(&tag)
}

/// What PS3.18 (Table 6.7.1-2) requires a study answer to hold that the columns do not
/// give: taken from its first instance's metadata.
const STUDY_FROM_METADATA: &[&str] = &[
    "00080020", "00080030", "00080050", "00080090", "00080201", "00081030", "00100010", "00100020",
    "00100030", "00100040", "0020000D", "00200010",
];
/// The same for a series (Table 6.7.1-2a).
const SERIES_FROM_METADATA: &[&str] = &[
    "00080060", "00080201", "0008103E", "0020000E", "00200011", "00400244", "00400245", "00400275",
];
/// The same for an instance (Table 6.7.1-2b).
const INSTANCE_FROM_METADATA: &[&str] = &["00080201", "00280100"];

/// One answer: `out` (from the columns) with what `metadata` (the DICOM JSON of the answer's
/// first instance, or of the instance) adds: the level's required attributes, those of the
/// levels above it the path leaves open (`above`: a series searched for across studies
/// carries its study's), and what `include` asks for. What the columns gave stays.
fn answer(
    level: Level,
    above: &[Level],
    include: &Include,
    metadata: Option<&str>,
    mut out: BTreeMap<String, Value>,
) -> BTreeMap<String, Value> {
    let metadata: serde_json::Map<String, Value> = metadata
        .and_then(|m| serde_json::from_str(m).ok())
        .unwrap_or_default();
    let required = |l: Level| match l {
        Level::Study => STUDY_FROM_METADATA,
        Level::Series => SERIES_FROM_METADATA,
        Level::Instance => INSTANCE_FROM_METADATA,
    };
    let of_level = |l: Level, tag: &str| match l {
        Level::Study => study_level(tag),
        Level::Series => series_level(tag),
        Level::Instance => true,
    };
    let wanted = |tag: &str| {
        std::iter::once(level)
            .chain(above.iter().copied())
            .any(|l| required(l).contains(&tag) || (include.all && of_level(l, tag)))
            || include.tags.contains(tag)
    };
    for (tag, value) in metadata {
        if wanted(&tag) {
            out.entry(tag).or_insert(value);
        }
    }
    // Asked for (required, matched on, named) but not in the files: there, with no value
    // (PS3.4 C.2.2.1: a return key without a value is sent empty).
    let asked = std::iter::once(level)
        .chain(above.iter().copied())
        .flat_map(|l| required(l).iter().map(|t| t.to_string()))
        .chain(include.tags.iter().cloned());
    for tag in asked {
        if let std::collections::btree_map::Entry::Vacant(e) = out.entry(tag) {
            let vr = vr_of(e.key());
            e.insert(json!({ "vr": vr }));
        }
    }
    if level != Level::Series {
        // Every object stored here is online (PS3.4 C.3.4: ONLINE).
        out.insert("00080056".into(), text("ONLINE", "CS"));
    }
    out
}

/// An answer's attributes from the columns, by tag.
fn columns<const N: usize>(pairs: [(&str, Value); N]) -> BTreeMap<String, Value> {
    pairs.into_iter().map(|(t, v)| (t.to_string(), v)).collect()
}

/// The answer to a search; `more`: more results match than it holds, said as PS3.18 has it
/// (a Warning header, code 299), so a client that does not page is not left to think it has
/// them all.
fn dicom_json(rows: Vec<BTreeMap<String, Value>>, more: bool, include: &Include) -> Response {
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/dicom+json")],
        Json(rows),
    )
        .into_response();
    if more {
        response.headers_mut().append(
            header::WARNING,
            header::HeaderValue::from_static(
                "299 overread-server \"There are additional results that can be requested\"",
            ),
        );
    }
    if !include.unknown.is_empty() {
        response.headers_mut().append(
            header::WARNING,
            super::warning(&format!(
                "includefield {}: not a keyword or tag known here, left out",
                include.unknown.join(", ")
            )),
        );
    }
    response
}

/// Results a search gives without a `limit`, and the most it gives with one.
const DEFAULT_LIMIT: i64 = 1000;
const MAX_LIMIT: i64 = 10_000;

/// The order that picks a level's first instance, whose metadata answers for the level: by
/// SOP Instance UID, compared byte by byte on both databases (PostgreSQL's own collation
/// would pass over the dots, and pick another instance than SQLite does).
fn first_instance(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "r.sop_uid",
        Backend::Postgres => "r.sop_uid COLLATE \"C\"",
    }
}

/// One search: `select` (over `instances JOIN cases`, ending in a WHERE) narrowed to the
/// caller's scope, the path's UIDs and the query keys, then `order` (GROUP BY / ORDER BY),
/// limit and offset. Audited as a search for `what`. Also says whether more rows match than
/// the page holds (the answer then says so: [`dicom_json`]).
#[allow(clippy::too_many_arguments)]
async fn search(
    server: &Server,
    caller: &Caller,
    target: &Target,
    query: &[(String, String)],
    level: Level,
    select: &str,
    order: &str,
    what: &str,
) -> Result<(super::Scope, Vec<AnyRow>, bool, Include), ApiError> {
    let scope = scope(&server.db, caller, target).await?;
    let mut sql = Sql::new(select);
    sql.scope(&scope).target(target);
    let (limit, offset, include) = filters(server.db.backend, &mut sql, query, level)?;
    // One row more than asked: whether there are more to be had.
    sql.push(order).push(" LIMIT ");
    sql.bind(Bind::Int(limit + 1))
        .push(" OFFSET ")
        .bind(Bind::Int(offset));
    let mut rows = sql.fetch_all(&server.db).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    audit_access(
        server,
        caller,
        "dicomweb_search",
        &scope,
        &rows,
        &format!("{what} in {} ({} found)", target.describe(), rows.len()),
    )
    .await?;
    Ok((scope, rows, more, include))
}

/// What a study answer counts that no one instance's metadata says: its modalities and how
/// many series and instances it holds, for the studies of `rows` (by case and study: a study
/// held by two cases counts each case's own), in the caller's scope.
struct StudyFacts {
    modalities: Vec<String>,
    series: i64,
    instances: i64,
}

async fn study_facts(
    server: &Server,
    scope: &super::Scope,
    rows: &[AnyRow],
) -> Result<BTreeMap<(String, String), StudyFacts>, ApiError> {
    let mut facts: BTreeMap<(String, String), StudyFacts> = BTreeMap::new();
    if rows.is_empty() {
        return Ok(facts);
    }
    let studies: BTreeSet<String> = rows.iter().map(|r| r.get("study_uid")).collect();
    let of_studies = |select: &str| {
        let mut q = Sql::new(select);
        for (i, study) in studies.iter().enumerate() {
            if i > 0 {
                q.push(", ");
            }
            q.text(study);
        }
        q.push(")");
        q.scope(scope);
        q
    };
    let mut counts = of_studies(
        "SELECT instances.case_id AS case_id, instances.study_uid AS study_uid,
                COUNT(DISTINCT instances.series_uid) AS series_count, COUNT(*) AS instance_count
         FROM instances JOIN cases ON cases.id = instances.case_id WHERE instances.study_uid IN (",
    );
    counts.push(" GROUP BY instances.case_id, instances.study_uid");
    for r in counts.fetch_all(&server.db).await? {
        facts.insert(
            (r.get("case_id"), r.get("study_uid")),
            StudyFacts {
                modalities: Vec::new(),
                series: r.try_get("series_count").unwrap_or(0),
                instances: r.try_get("instance_count").unwrap_or(0),
            },
        );
    }
    let modalities = of_studies(
        "SELECT DISTINCT instances.case_id AS case_id, instances.study_uid AS study_uid,
                instances.modality AS modality
         FROM instances JOIN cases ON cases.id = instances.case_id WHERE instances.study_uid IN (",
    );
    for r in modalities.fetch_all(&server.db).await? {
        if let Some(f) = facts.get_mut(&(r.get("case_id"), r.get("study_uid"))) {
            f.modalities.push(r.get("modality"));
        }
    }
    for f in facts.values_mut() {
        f.modalities.sort();
    }
    Ok(facts)
}

/// The study's counts and modalities, into an answer searched across studies (a series or an
/// instance carries its study's attributes where the path names no study).
fn with_study_facts(
    mut out: BTreeMap<String, Value>,
    facts: Option<&StudyFacts>,
) -> BTreeMap<String, Value> {
    if let Some(f) = facts {
        out.insert(
            "00080061".into(),
            json!({ "vr": "CS", "Value": f.modalities }),
        );
        out.insert("00201206".into(), int(Some(f.series), "IS"));
        out.insert("00201208".into(), int(Some(f.instances), "IS"));
    }
    out
}

pub(super) async fn studies(
    State(server): State<Server>,
    caller: Caller,
    Path(params): Path<HashMap<String, String>>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let target = Target::from_params(&params);
    let first = first_instance(server.db.backend);
    let (scope, rows, more, include) = search(
        &server,
        &caller,
        &target,
        &query,
        Level::Study,
        &format!(
            "SELECT instances.case_id AS case_id, instances.study_uid AS study_uid,
                (SELECT r.metadata_json FROM instances r WHERE r.case_id = instances.case_id
                   AND r.study_uid = instances.study_uid ORDER BY {first} LIMIT 1)
                   AS metadata_json,
                MIN(instances.study_date) AS study_date,
                MIN(instances.study_description) AS study_description,
                MIN(instances.accession_number) AS accession_number,
                MIN(instances.patient_id) AS patient_id,
                MIN(instances.patient_name) AS patient_name,
                COUNT(DISTINCT instances.series_uid) AS series_count,
                COUNT(*) AS instance_count
         FROM instances JOIN cases ON cases.id = instances.case_id WHERE 1 = 1"
        ),
        " GROUP BY instances.case_id, instances.study_uid ORDER BY study_date DESC, instances.study_uid, instances.case_id",
        "studies",
    )
    .await?;
    let facts = study_facts(&server, &scope, &rows).await?;
    let base = root(&server, &headers, &target);
    let out = rows
        .iter()
        .map(|r| {
            let study: String = r.get("study_uid");
            let mods = facts
                .get(&(r.get("case_id"), study.clone()))
                .map(|f| f.modalities.clone())
                .unwrap_or_default();
            let out = columns([
                ("00080020", text(r.get("study_date"), "DA")),
                ("00080050", text(r.get("accession_number"), "SH")),
                ("00080061", json!({ "vr": "CS", "Value": mods })),
                ("00081030", text(r.get("study_description"), "LO")),
                ("00081190", text(&format!("{base}/studies/{study}"), "UR")),
                ("00100010", person(r.get("patient_name"))),
                ("00100020", text(r.get("patient_id"), "LO")),
                ("0020000D", text(&study, "UI")),
                ("00201206", int(r.try_get("series_count").ok(), "IS")),
                ("00201208", int(r.try_get("instance_count").ok(), "IS")),
            ]);
            answer(
                Level::Study,
                &[],
                &include,
                r.try_get("metadata_json").ok(),
                out,
            )
        })
        .collect();
    Ok(dicom_json(out, more, &include))
}

pub(super) async fn series(
    State(server): State<Server>,
    caller: Caller,
    Path(params): Path<HashMap<String, String>>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let target = Target::from_params(&params);
    let first = first_instance(server.db.backend);
    let (scope, rows, more, include) = search(
        &server,
        &caller,
        &target,
        &query,
        Level::Series,
        &format!(
            "SELECT instances.case_id AS case_id, instances.study_uid AS study_uid,
                instances.series_uid AS series_uid,
                (SELECT r.metadata_json FROM instances r WHERE r.case_id = instances.case_id
                   AND r.study_uid = instances.study_uid AND r.series_uid = instances.series_uid
                   ORDER BY {first} LIMIT 1) AS metadata_json,
                MIN(instances.modality) AS modality,
                MIN(instances.series_number) AS series_number,
                MIN(instances.series_description) AS series_description,
                COUNT(*) AS instance_count
         FROM instances JOIN cases ON cases.id = instances.case_id WHERE 1 = 1"
        ),
        " GROUP BY instances.case_id, instances.study_uid, instances.series_uid ORDER BY series_number, instances.series_uid, instances.case_id",
        "series",
    )
    .await?;
    let base = root(&server, &headers, &target);
    let above: &[Level] = if target.study.is_some() {
        &[]
    } else {
        &[Level::Study]
    };
    let facts = if target.study.is_none() {
        study_facts(&server, &scope, &rows).await?
    } else {
        BTreeMap::new()
    };
    let out = rows
        .iter()
        .map(|r| {
            let study: String = r.get("study_uid");
            let series: String = r.get("series_uid");
            let out = columns([
                ("00080060", text(r.get("modality"), "CS")),
                ("0008103E", text(r.get("series_description"), "LO")),
                (
                    "00081190",
                    text(&format!("{base}/studies/{study}/series/{series}"), "UR"),
                ),
                ("0020000D", text(&study, "UI")),
                ("0020000E", text(&series, "UI")),
                ("00200011", int(r.try_get("series_number").ok(), "IS")),
                ("00201209", int(r.try_get("instance_count").ok(), "IS")),
            ]);
            let out = with_study_facts(out, facts.get(&(r.get("case_id"), study.clone())));
            answer(
                Level::Series,
                above,
                &include,
                r.try_get("metadata_json").ok(),
                out,
            )
        })
        .collect();
    Ok(dicom_json(out, more, &include))
}

pub(super) async fn instances(
    State(server): State<Server>,
    caller: Caller,
    Path(params): Path<HashMap<String, String>>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let target = Target::from_params(&params);
    let (scope, rows, more, include) = search(
        &server,
        &caller,
        &target,
        &query,
        Level::Instance,
        "SELECT instances.case_id AS case_id, instances.study_uid AS study_uid,
                instances.series_uid AS series_uid, instances.sop_uid AS sop_uid,
                instances.metadata_json AS metadata_json,
                instances.sop_class_uid AS sop_class_uid,
                instances.transfer_syntax_uid AS transfer_syntax_uid,
                instances.instance_number AS instance_number,
                instances.pixel_rows AS pixel_rows, instances.pixel_columns AS pixel_columns,
                instances.number_of_frames AS number_of_frames, instances.modality AS modality
         FROM instances JOIN cases ON cases.id = instances.case_id WHERE 1 = 1",
        " ORDER BY instances.series_uid, instances.instance_number, instances.sop_uid, instances.case_id",
        "instances",
    )
    .await?;
    let base = root(&server, &headers, &target);
    let above: &[Level] = match (&target.study, &target.series) {
        (None, _) => &[Level::Study, Level::Series],
        (Some(_), None) => &[Level::Series],
        (Some(_), Some(_)) => &[],
    };
    let facts = if target.study.is_none() {
        study_facts(&server, &scope, &rows).await?
    } else {
        BTreeMap::new()
    };
    let out = rows
        .iter()
        .map(|r| {
            let study: String = r.get("study_uid");
            let series: String = r.get("series_uid");
            let sop: String = r.get("sop_uid");
            let out = columns([
                ("00080016", text(r.get("sop_class_uid"), "UI")),
                ("00080018", text(&sop, "UI")),
                ("00080060", text(r.get("modality"), "CS")),
                (
                    "00081190",
                    text(
                        &format!("{base}/studies/{study}/series/{series}/instances/{sop}"),
                        "UR",
                    ),
                ),
                ("00083002", text(r.get("transfer_syntax_uid"), "UI")),
                ("0020000D", text(&study, "UI")),
                ("0020000E", text(&series, "UI")),
                ("00200013", int(r.try_get("instance_number").ok(), "IS")),
                ("00280008", int(r.try_get("number_of_frames").ok(), "IS")),
                ("00280010", int(r.try_get("pixel_rows").ok(), "US")),
                ("00280011", int(r.try_get("pixel_columns").ok(), "US")),
            ]);
            let out = with_study_facts(out, facts.get(&(r.get("case_id"), study.clone())));
            answer(
                Level::Instance,
                above,
                &include,
                r.try_get("metadata_json").ok(),
                out,
            )
        })
        .collect();
    Ok(dicom_json(out, more, &include))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_escape_sql_patterns() {
        assert_eq!(like_pattern("DOE*"), "DOE%");
        assert_eq!(like_pattern("D?E"), "D_E");
        assert_eq!(like_pattern("100%_a\\b"), "100\\%\\_a\\\\b");
        assert_eq!(glob_pattern("A[1]*?"), "A[[]1]*?");
    }

    #[test]
    fn unknown_keys_are_named() {
        let mut sql = Sql::new("");
        let err = filters(
            Backend::Sqlite,
            &mut sql,
            &[("PatientWeight".into(), "70".into())],
            Level::Study,
        )
        .unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert!(err.message.contains("PatientWeight"), "{}", err.message);
        let err = filters(
            Backend::Sqlite,
            &mut sql,
            &[("StudyDate".into(), "2024-01".into())],
            Level::Study,
        )
        .unwrap_err();
        assert!(err.message.contains("YYYYMMDD"));
        assert!(
            filters(
                Backend::Sqlite,
                &mut sql,
                &[("00100020".into(), "X".into())],
                Level::Study
            )
            .is_ok()
        );
        // Series keys are not study keys.
        assert!(
            filters(
                Backend::Sqlite,
                &mut sql,
                &[("Modality".into(), "CT".into())],
                Level::Study
            )
            .is_err()
        );
    }
}
