//! The real workstation app (`OverreadApp` in eframe) driven by egui_kittest with wgpu on the
//! software adapter: open a synthetic series, scroll, window presets, rotate/flip markers,
//! measurements checked against the phantom's known anatomy.

use std::path::Path;
use std::time::{Duration, Instant};

use eframe::egui;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use glam::DVec3;
use imaging::synth::{PhantomSpec, write_series};
use overread::app::settings::Settings;
use overread::app::{Layout, OverreadApp, Tool};
use overread::render::{Plane, RenderedImage};
use overread::viewer::measure::{Shape, Value};

use crate::support::{AlsaHome, shared, tempdir, with_test_drafts};

fn spec() -> PhantomSpec {
    PhantomSpec {
        columns: 128,
        rows: 128,
        slices: 40,
        pixel_mm: 2.8,
        spacing_mm: 2.5,
        noise_hu: 0.0,
        nodule_diameter_mm: 20.0,
        // A fixed date: the viewport's corner shows it (snapshots).
        study_date: "20240315".into(),
        ..PhantomSpec::default()
    }
}

/// The app on a freshly written phantom series, stepped until the stack is loaded.
fn open_app(dir: &Path) -> Harness<'static, OverreadApp> {
    open_app_with(dir, Settings::default())
}

fn open_app_with(dir: &Path, settings: Settings) -> Harness<'static, OverreadApp> {
    open_app_sized(dir, settings, egui::vec2(1200.0, 800.0))
}

fn open_app_sized(
    dir: &Path,
    settings: Settings,
    size: egui::Vec2,
) -> Harness<'static, OverreadApp> {
    write_series(&spec(), dir).unwrap();
    harness_on(dir, settings, size)
}

/// The app on the studies already in `dir`, stepped until every stack it opens is loaded.
fn harness_on(dir: &Path, settings: Settings, size: egui::Vec2) -> Harness<'static, OverreadApp> {
    let dir = dir.to_path_buf();
    let mut harness = Harness::builder()
        .with_size(size)
        .with_max_steps(100_000)
        .wgpu()
        .build_eframe(move |cc| {
            OverreadApp::with_settings(cc, vec![dir], &with_test_drafts(settings))
        });
    let start = Instant::now();
    // Loaded, and the browser's thumbnails made: rows grow when theirs arrives, which can widen
    // the browser and move the viewports, so tests that point at the screen wait for them.
    while !(harness.state().loaded() && harness.state().thumbnails_done()) {
        harness.step();
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the series did not load: {}",
            harness.state().status()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    harness.step();
    assert!(harness.state().gpu_error().is_none());
    harness
}

/// The active viewport on the axial plane through z = 0 (the phantom's nodule and spine).
fn show_axial_at_zero(h: &mut Harness<'_, OverreadApp>) {
    h.state_mut().show_plane(Plane::Axial, 0.0);
    h.step();
}

fn press(h: &mut Harness<'_, OverreadApp>, key: egui::Key) {
    h.key_press(key);
    h.step();
}

fn slice(h: &Harness<'_, OverreadApp>) -> (usize, usize) {
    let app = h.state();
    let info = app.volume_info().unwrap();
    app.viewport().unwrap().overlay(info).slice.unwrap()
}

fn markers(h: &Harness<'_, OverreadApp>) -> [String; 4] {
    let app = h.state();
    let info = app.volume_info().unwrap();
    app.viewport().unwrap().overlay(info).markers.unwrap()
}

/// Click at the screen position of patient point `p` on the current view (nearest pixel
/// centre); returns the position clicked.
fn click_patient(h: &mut Harness<'_, OverreadApp>, p: DVec3) {
    let view = h.state().current_view().unwrap();
    let grid = h.state().cell_grid(h.state().active()).unwrap();
    let (x, y) = view.pixel_at_patient(p);
    // pixel_at_patient gives continuous coordinates with pixel centres at .5: the centre of
    // the pixel the point is in.
    let pos = grid.screen(x.floor() + 0.5, y.floor() + 0.5);
    click_at(h, pos);
}

/// A press or release of `button` at `pos`.
fn button_event(pos: egui::Pos2, button: egui::PointerButton, pressed: bool) -> egui::Event {
    egui::Event::PointerButton {
        pos,
        button,
        pressed,
        modifiers: egui::Modifiers::NONE,
    }
}

/// Move to `pos` and click the primary button there (press and release a frame each).
fn click_at(h: &mut Harness<'_, OverreadApp>, pos: egui::Pos2) {
    h.event(egui::Event::PointerMoved(pos));
    h.step();
    for pressed in [true, false] {
        h.event(button_event(pos, egui::PointerButton::Primary, pressed));
        h.step();
    }
}

/// Press the primary button at the first of `path`, move through the rest a frame each, and
/// release at the last.
fn drag_along(h: &mut Harness<'_, OverreadApp>, path: &[egui::Pos2]) {
    let (Some(&first), Some(&last)) = (path.first(), path.last()) else {
        return;
    };
    h.event(egui::Event::PointerMoved(first));
    h.step();
    h.event(button_event(first, egui::PointerButton::Primary, true));
    h.step();
    for &pos in &path[1..] {
        h.event(egui::Event::PointerMoved(pos));
        h.step();
    }
    h.event(button_event(last, egui::PointerButton::Primary, false));
    h.step();
}

/// Drag in `steps` straight steps from `from` to `to`.
/// Change every file of the series in `dir` by `edit` (and write it back).
fn edit_each_file(dir: &Path, edit: impl Fn(&mut dicom_object::DefaultDicomObject)) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let mut obj = dicom_object::open_file(&path).unwrap();
        edit(&mut obj);
        obj.write_to_file(&path).unwrap();
    }
}

/// The nodule-to-spine length on the axial plane through z = 0 (the phantom's two points
/// the measurement tests use), drawn with the Length tool; returns its two points.
fn measure_nodule_to_spine(h: &mut Harness<'_, OverreadApp>) -> (DVec3, DVec3) {
    let (p, q) = (DVec3::new(-70.0, -20.0, 0.0), DVec3::new(0.0, 70.0, 0.0));
    show_axial_at_zero(h);
    h.get_by_label("Length").click();
    h.step();
    click_patient(h, p);
    click_patient(h, q);
    (p, q)
}

/// Scan `paths` as a drop does, and step until the scan has replaced the study and its
/// stacks are loaded.
fn scan_and_wait(h: &mut Harness<'_, OverreadApp>, paths: Vec<std::path::PathBuf>) {
    scan_until(h, paths, |app| {
        app.status().contains("stack(s) found") && app.loaded()
    });
}

/// Scan `paths` as a drop does, and step until `done` (at most a minute).
fn scan_until(
    h: &mut Harness<'_, OverreadApp>,
    paths: Vec<std::path::PathBuf>,
    done: impl Fn(&OverreadApp) -> bool,
) {
    let ctx = h.ctx.clone();
    h.state_mut().scan(paths, ctx);
    let start = Instant::now();
    while !done(h.state()) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{}",
            h.state().status()
        );
        h.step();
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn drag(h: &mut Harness<'_, OverreadApp>, from: egui::Pos2, to: egui::Pos2, steps: usize) {
    let path: Vec<egui::Pos2> = (0..=steps)
        .map(|k| from + (to - from) * (k as f32 / steps as f32))
        .collect();
    drag_along(h, &path);
}

#[test]
fn the_app_opens_a_series_and_scrolls_with_the_keyboard() {
    let dir = tempdir();
    let mut h = open_app(dir.path());
    assert_eq!(h.state().viewport().unwrap().plane, Plane::Axial);
    let (k, n) = slice(&h);
    assert_eq!(n, 40);
    press(&mut h, egui::Key::ArrowDown);
    assert_eq!(slice(&h), (k + 1, n));
    press(&mut h, egui::Key::PageDown);
    assert_eq!(slice(&h), (k + 11, n));
    press(&mut h, egui::Key::Home);
    assert_eq!(slice(&h), (1, n));
    press(&mut h, egui::Key::End);
    assert_eq!(slice(&h), (n, n));
    press(&mut h, egui::Key::ArrowUp);
    assert_eq!(slice(&h), (n - 1, n));
    // The browser lists the series, with a thumbnail of its middle slice.
    assert!(h.query_by_label_contains("40 images").is_some());
    // The patient's record number and birth date under the name (two of one name apart).
    assert!(
        h.query_by_label_contains("ID SYNTH0001, born 1970-01-01")
            .is_some()
    );
    let start = Instant::now();
    while h.state().thumbnail_ids().is_empty() && start.elapsed() < Duration::from_secs(30) {
        h.step();
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(h.state().thumbnail_ids().len(), 1);
}

/// A file the scan leaves out is named on screen (the browser lists it with the reason, the
/// status counts it); the series beside it opens.
#[test]
fn a_file_left_out_is_listed_in_the_browser() {
    let dir = tempdir();
    write_series(&spec(), dir.path()).unwrap();
    std::fs::write(dir.path().join("IM99999.dcm"), b"not a DICOM file").unwrap();
    let mut h = harness_on(dir.path(), Settings::default(), egui::vec2(1200.0, 800.0));
    assert_eq!(slice(&h).1, 40);
    assert!(
        h.state().status().contains("1 file(s) left out"),
        "{}",
        h.state().status()
    );
    h.get_by_label("Files left out (1)").click();
    h.run();
    assert!(h.query_by_label_contains("IM99999.dcm").is_some());
}

/// A series whose files could not give all they say (here one file's Modality LUT, shorter
/// than its descriptor) is marked in the browser, and says what and how many files on hover.
#[test]
fn a_series_shown_otherwise_than_its_files_mean_is_marked_in_the_browser() {
    use dicom_core::{DataElement, PrimitiveValue, VR, value::DataSetSequence};
    use dicom_dictionary_std::tags;
    let dir = tempdir();
    write_series(&spec(), dir.path()).unwrap();
    let mut files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut obj = dicom_object::open_file(&files[0]).unwrap();
    let item = dicom_object::InMemDicomObject::from_element_iter([
        DataElement::new(
            tags::LUT_DESCRIPTOR,
            VR::US,
            PrimitiveValue::U16([4096, 0, 16].into_iter().collect()),
        ),
        DataElement::new(
            tags::LUT_DATA,
            VR::US,
            PrimitiveValue::U16([7, 8, 9].into_iter().collect()),
        ),
    ]);
    obj.put(DataElement::new(
        tags::MODALITY_LUT_SEQUENCE,
        VR::SQ,
        DataSetSequence::from(vec![item]),
    ));
    obj.write_to_file(&files[0]).unwrap();
    let mut h = harness_on(dir.path(), Settings::default(), egui::vec2(1200.0, 800.0));
    assert_eq!(slice(&h).1, 40, "the series opens");
    h.get_by_label_contains("40 images, 128x128 (warning)")
        .hover();
    h.run();
    assert!(
        h.query_by_label_contains("1 of 40 files: its Modality LUT (0028,3000) could not be read")
            .is_some()
    );
}

/// A series with slices missing is marked in the browser, and says where on hover (by the
/// stack's own numbering, as the viewport's "Im 19/39" counts: one of the phantom's 40
/// slices is dropped, the one after it in that order); a gantry tilt and uneven spacing are said there too (not
/// marked: reformats place every slice where it is).
#[test]
fn a_series_with_missing_slices_is_marked_in_the_browser() {
    let dir = tempdir();
    write_series(
        &PhantomSpec {
            drop: vec![20],
            tilt_deg: 12.0,
            ..spec()
        },
        dir.path(),
    )
    .unwrap();
    let mut h = harness_on(dir.path(), Settings::default(), egui::vec2(1200.0, 800.0));
    assert_eq!(slice(&h).1, 39);
    h.get_by_label_contains("39 images, 128x128 (warning)")
        .hover();
    h.run();
    assert!(
        h.query_by_label_contains(
            "about 1 slice missing (after slice 19): reformats show no data there"
        )
        .is_some()
    );
    assert!(h.query_by_label_contains("gantry tilt 12.0°").is_some());
}

#[test]
fn window_presets_rotate_and_flip_follow_the_conventions() {
    let dir = tempdir();
    let mut h = open_app(dir.path());
    let window = |h: &Harness<'_, OverreadApp>| {
        let app = h.state();
        app.viewport()
            .unwrap()
            .overlay(app.volume_info().unwrap())
            .window
    };
    press(&mut h, egui::Key::Num5);
    assert_eq!(window(&h), Some((1500.0, -600.0)), "5 is the lung window");
    press(&mut h, egui::Key::Num1);
    assert_eq!(window(&h), Some((80.0, 40.0)), "1 is the brain window");
    assert_eq!(markers(&h), ["R", "L", "A", "P"]);
    press(&mut h, egui::Key::R);
    assert_eq!(markers(&h), ["P", "A", "R", "L"]);
    press(&mut h, egui::Key::Escape);
    press(&mut h, egui::Key::H);
    assert_eq!(markers(&h), ["L", "R", "A", "P"]);
    press(&mut h, egui::Key::K);
    assert_eq!(h.state().viewport().unwrap().plane, Plane::Coronal);
    assert_eq!(markers(&h), ["R", "L", "H", "F"]);
}

/// A radiograph with only Imager Pixel Spacing (a real DX, 0.4 mm) is measured in mm at the
/// detector, said so in the measurement list, and not offered to the report as mm; an angle
/// on it (the Cobb angle of a scoliosis film) is the angle on the film, and is offered.
#[test]
fn a_radiograph_is_measured_in_mm_at_the_detector() {
    let Some(dx) = shared("dicom/codecs/pydicom_misc/dicom/j2k/JPEG2KLossless_1s_1f_u_16_16.dcm")
    else {
        return;
    };
    let dir = tempdir();
    std::fs::copy(&dx, dir.path().join("dx.dcm")).unwrap();
    // A CT beside it, to be shown in its place at the end.
    write_series(
        &PhantomSpec {
            columns: 16,
            rows: 16,
            slices: 2,
            ..spec()
        },
        &dir.path().join("ct"),
    )
    .unwrap();
    let mut h = harness_on(dir.path(), Settings::default(), egui::vec2(1280.0, 900.0));
    let stack_ids = |h: &Harness<'_, OverreadApp>| -> Vec<String> {
        h.state()
            .patients()
            .iter()
            .flat_map(|p| p.stacks())
            .map(|st| st.id.clone())
            .collect()
    };
    let dx_id = stack_ids(&h)
        .into_iter()
        .find(|id| {
            h.state()
                .patients()
                .iter()
                .flat_map(|p| p.stacks())
                .any(|st| st.id == *id && st.geometry.spacing_at_detector)
        })
        .unwrap();
    let ctx = h.ctx.clone();
    h.state_mut().open_stack(&dx_id, &ctx);
    while !h.state().loaded() {
        h.step();
    }
    h.step();
    h.get_by_label("Length").click();
    h.step();
    let view = h.state().current_view().unwrap();
    // Two points 100 mm apart across the image's middle row, in its own (untrusted) space.
    let centre = DVec3::from(view.center_mm);
    click_patient(&mut h, centre - DVec3::new(50.0, 0.0, 0.0));
    click_patient(&mut h, centre + DVec3::new(50.0, 0.0, 0.0));
    let m = h.state().measurements()[0].clone();
    let Some(Value::LengthMm(mm)) = h.state().measurement_value(&m) else {
        panic!("{m:?}")
    };
    let pixel_mm = h.state().current_view().unwrap().pixel_mm;
    assert!(
        (mm - 100.0).abs() <= 2.0 * pixel_mm,
        "{mm} mm (pixel {pixel_mm})"
    );
    assert_eq!(
        h.state().measurement_units(&m),
        overread::app::LengthUnits::DetectorMillimetres
    );
    h.step();
    assert!(
        h.query_by_label_contains("mm at detector").is_some(),
        "the measurement list says the length is at the detector"
    );
    h.state_mut().report.open = true;
    h.step();
    assert!(
        h.query_by_label_contains(&format!("Insert #{}", m.id))
            .is_none(),
        "not offered to the report as mm"
    );

    h.get_by_label("Angle").click();
    h.step();
    for d in [
        DVec3::new(-40.0, 0.0, 0.0),
        DVec3::ZERO,
        DVec3::new(-40.0, -40.0, 0.0),
    ] {
        click_patient(&mut h, centre + d);
    }
    let angle = h.state().measurements()[1].clone();
    let Some(Value::AngleDeg(deg)) = h.state().measurement_value(&angle) else {
        panic!("{angle:?}")
    };
    assert!((deg - 45.0).abs() < 1.0, "{deg}");
    h.step();
    h.get_by_label_contains(&format!("Insert #{}", angle.id))
        .click();
    h.step();
    assert!(
        h.state().report.draft.findings.contains(" degrees"),
        "{}",
        h.state().report.draft.findings
    );
    // Linked without points: the film's own plane is not patient space.
    let linked = &h.state().report.linked[0];
    assert_eq!(linked.unit, "deg");
    assert!(linked.source.as_ref().unwrap().points_mm.is_empty());

    // The CT shown in the film's place: the film's length is still no patient mm (not valued,
    // not offered), its angle still an angle.
    let ct_id = stack_ids(&h).into_iter().find(|id| *id != dx_id).unwrap();
    let ctx = h.ctx.clone();
    h.state_mut().open_stack(&ct_id, &ctx);
    while !h.state().loaded() {
        h.step();
    }
    h.step();
    assert_eq!(h.state().cell_stack(0), Some(ct_id.as_str()));
    assert_eq!(h.state().measurement_value(&m), None);
    assert_eq!(
        h.state().measurement_units(&m),
        overread::app::LengthUnits::DetectorMillimetres
    );
    assert!(matches!(
        h.state().measurement_value(&angle),
        Some(Value::AngleDeg(_))
    ));
    assert!(
        h.query_by_label_contains(&format!("Insert #{}", m.id))
            .is_none(),
        "not offered to the report as mm once its series is closed"
    );
}

/// A length between the nodule centre (-70, -20) and the spine centre (0, 70) on the axial
/// plane through z = 0: sqrt(70^2 + 90^2) = 114.02 mm, within the half-pixel snapping of the
/// clicks. Probes there read the phantom's values (30 HU nodule, 300 HU vertebral body). A
/// measurement along x at y = -20 shows in the coronal plane through y = -20.
#[test]
fn measurements_match_the_phantom_anatomy_and_show_in_other_planes() {
    let dir = tempdir();
    let mut h = open_app(dir.path());
    show_axial_at_zero(&mut h);
    h.get_by_label("Length").click();
    h.step();
    assert_eq!(h.state().tool(), Tool::Length);
    let nodule = DVec3::new(-70.0, -20.0, 0.0);
    let spine = DVec3::new(0.0, 70.0, 0.0);
    click_patient(&mut h, nodule);
    click_patient(&mut h, spine);
    let pixel_mm = h.state().current_view().unwrap().pixel_mm;
    let m = h.state().measurements()[0].clone();
    let Some(Value::LengthMm(mm)) = h.state().measurement_value(&m) else {
        panic!("not a length: {m:?}")
    };
    let expected = (70f64.powi(2) + 90f64.powi(2)).sqrt();
    assert!(
        (mm - expected).abs() <= pixel_mm * 1.5,
        "length {mm} mm, expected {expected} (pixel {pixel_mm} mm)"
    );
    assert_eq!(h.state().visible_measurements(), vec![m.id]);

    h.get_by_label("Probe").click();
    h.step();
    click_patient(&mut h, nodule);
    click_patient(&mut h, spine);
    let values: Vec<Option<Value>> = h.state().measurements()[1..]
        .iter()
        .map(|m| h.state().measurement_value(m))
        .collect();
    assert_eq!(
        values,
        vec![
            Some(Value::Point(Some(30.0))),
            Some(Value::Point(Some(300.0)))
        ]
    );

    // Along x at y = -20: cut by the coronal plane through y = -20, not by y = 0.
    h.get_by_label("Length").click();
    h.step();
    click_patient(&mut h, DVec3::new(-70.0, -20.0, 0.0));
    click_patient(&mut h, DVec3::new(0.0, -20.0, 0.0));
    let along_x = h.state().measurements().last().unwrap().clone();
    assert!(matches!(along_x.shape, Shape::Length { .. }));
    let y_of_points = along_x.shape.points()[0][1];
    h.state_mut().show_plane(Plane::Coronal, y_of_points);
    h.step();
    assert!(h.state().visible_measurements().contains(&along_x.id));
    h.state_mut().show_plane(Plane::Coronal, 0.0);
    h.step();
    assert!(!h.state().visible_measurements().contains(&along_x.id));
}

#[test]
fn every_default_binding_names_a_real_key() {
    for (name, action) in overread::viewer::bindings::default_bindings() {
        assert!(
            egui::Key::from_name(name).is_some(),
            "{action:?} is bound to {name:?}, which is not a key name"
        );
    }
}

fn screen_of(h: &Harness<'_, OverreadApp>, cell: usize, p: DVec3) -> egui::Pos2 {
    let view = h.state().cell_view(cell).unwrap();
    let grid = h.state().cell_grid(cell).unwrap();
    let (x, y) = view.pixel_at_patient(p);
    grid.screen(x.floor() + 0.5, y.floor() + 0.5)
}

/// MPR: axial, coronal and sagittal through one point. Scrolling the axial view moves the
/// point in z while the other planes keep their positions; dragging the crosshair centre in
/// the coronal view to a patient point moves the axial plane to its z and the sagittal plane to
/// its x.
#[test]
fn mpr_planes_follow_scrolling_and_the_crosshair() {
    let dir = tempdir();
    let mut h = open_app(dir.path());
    press(&mut h, egui::Key::M);
    h.step();
    let planes: Vec<Plane> = h.state().viewports().iter().map(|v| v.plane).collect();
    assert_eq!(planes, vec![Plane::Axial, Plane::Coronal, Plane::Sagittal]);
    let through_cursor = |h: &Harness<'_, OverreadApp>| {
        let c = h.state().cursor_mm();
        h.state()
            .viewports()
            .iter()
            .all(|v| (v.position_mm() - c.dot(v.normal())).abs() < 1e-6)
    };
    assert!(through_cursor(&h));
    let before = h.state().cursor_mm();
    assert_eq!(h.state().active(), 0);
    press(&mut h, egui::Key::ArrowDown);
    let after = h.state().cursor_mm();
    assert!(
        (after.z - before.z - 2.5).abs() < 1e-9,
        "{before} -> {after}"
    );
    assert_eq!((after.x, after.y), (before.x, before.y));
    assert!(through_cursor(&h));

    // Drag the crosshair centre in the coronal view to (x = -50, z = 10).
    let target = DVec3::new(-50.0, after.y, 10.0);
    let start = screen_of(&h, 1, after);
    let end = screen_of(&h, 1, target);
    drag(&mut h, start, end, 20);
    let pixel_mm = h.state().cell_view(1).unwrap().pixel_mm;
    let positions: Vec<f64> = h
        .state()
        .viewports()
        .iter()
        .map(|v| v.position_mm())
        .collect();
    assert!(
        (positions[0] - 10.0).abs() <= pixel_mm,
        "axial at {}",
        positions[0]
    );
    assert!(
        (positions[2] + 50.0).abs() <= pixel_mm,
        "sagittal at {}",
        positions[2]
    );
    assert!(
        (positions[1] - after.y).abs() < 1e-6,
        "coronal moved to {}",
        positions[1]
    );
    assert!(through_cursor(&h));
}

/// Angle, Cobb angle and ellipse ROI by clicks on the axial plane through z = 0: a right
/// angle, two lines 9.46 degrees apart, and an ellipse inside the vertebral body (300 HU,
/// radius 16 mm) reading exactly 300 HU with an area of pi * 8 * 8 mm2 (within the
/// half-pixel snapping of the clicks).
#[test]
fn angle_cobb_and_ellipse_measurements() {
    let dir = tempdir();
    let mut h = open_app(dir.path());
    show_axial_at_zero(&mut h);
    let pixel_mm = h.state().current_view().unwrap().pixel_mm;
    let value = |h: &Harness<'_, OverreadApp>| {
        let app = h.state();
        app.measurement_value(app.measurements().last().unwrap())
            .unwrap()
    };
    let p = |x: f64, y: f64| DVec3::new(x, y, 0.0);

    h.get_by_label("Angle").click();
    h.step();
    for q in [p(-60.0, 0.0), p(0.0, 0.0), p(0.0, -60.0)] {
        click_patient(&mut h, q);
    }
    let Value::AngleDeg(deg) = value(&h) else {
        panic!("not an angle")
    };
    assert!((deg - 90.0).abs() < 1.0, "{deg}");

    h.get_by_label("Cobb").click();
    h.step();
    for q in [
        p(-60.0, -40.0),
        p(60.0, -40.0),
        p(-60.0, 40.0),
        p(60.0, 60.0),
    ] {
        click_patient(&mut h, q);
    }
    let Value::AngleDeg(deg) = value(&h) else {
        panic!("not an angle")
    };
    let expected = (20.0f64 / 120.0).atan().to_degrees();
    assert!((deg - expected).abs() < 0.5, "{deg} vs {expected}");

    h.get_by_label("Ellipse").click();
    h.step();
    click_patient(&mut h, p(0.0, 70.0));
    click_patient(&mut h, p(8.0, 78.0));
    let Value::Region {
        area_mm2,
        mean,
        sd,
        min,
        max,
        samples,
        without_data,
    } = value(&h)
    else {
        panic!("not a region")
    };
    assert_eq!(without_data, 0, "the ellipse lies inside the volume");
    let expected = std::f64::consts::PI * 64.0;
    // Each semi-axis may be off by a pixel from the click snapping.
    let tolerance = std::f64::consts::PI * (2.0 * 8.0 * pixel_mm + pixel_mm * pixel_mm);
    assert!(
        (area_mm2 - expected).abs() <= tolerance,
        "{area_mm2} vs {expected}"
    );
    assert_eq!((mean, sd, min, max), (300.0, 0.0, 300.0, 300.0));
    assert!(samples > 20, "{samples} samples");
    assert_eq!(h.state().measurements().len(), 3);
}

/// Keys come from the settings file: `next_slice = ["J"]` moves "next slice" to J only (the
/// arrow keys no longer scroll forward); cine speed keys change the frame rate.
#[test]
fn the_settings_file_remaps_keys() {
    let dir = tempdir();
    let settings = Settings::parse(
        "cine_fps = 20\n[keys]\nnext_slice = [\"J\"]\nlast_slice = [\"pagedown\"]\n\
         flip_horizontal = [\"r\"]\n",
    )
    .unwrap();
    let mut h = open_app_with(dir.path(), settings);
    // The misspelt key is reported, and still after the study was scanned and opened (the
    // status line has moved on).
    let problems = h.state().settings_problems().join("\n");
    assert!(
        problems.contains("\"pagedown\" is not a key name"),
        "{problems}"
    );
    assert!(!h.state().status().contains("pagedown"));
    // "r" is the key R: it flips and no longer turns, and the turn left without a key is said.
    assert!(
        problems.contains("rotate_clockwise has no key (R now does flip_horizontal)"),
        "{problems}"
    );
    press(&mut h, egui::Key::R);
    assert_eq!(markers(&h), ["L", "R", "A", "P"], "R flips, and only flips");
    press(&mut h, egui::Key::R);
    let (k, n) = slice(&h);
    // With Ctrl (egui's own shortcuts: Ctrl+Plus zooms the interface) a key is not a binding.
    h.key_press_modifiers(egui::Modifiers::CTRL, egui::Key::J);
    h.step();
    assert_eq!(slice(&h), (k, n), "Ctrl+J does not scroll");
    press(&mut h, egui::Key::J);
    assert_eq!(slice(&h), (k + 1, n));
    press(&mut h, egui::Key::ArrowDown);
    assert_eq!(slice(&h), (k + 1, n), "ArrowDown is no longer bound");
    press(&mut h, egui::Key::ArrowUp);
    assert_eq!(slice(&h), (k, n));
    assert_eq!(h.state().cine(), (20.0, false));
    press(&mut h, egui::Key::Plus);
    assert_eq!(h.state().cine().0, 25.0);
    // Cine plays the series it was started on: another layout stops it.
    press(&mut h, egui::Key::C);
    assert_eq!(h.state().cine(), (25.0, true));
    press(&mut h, egui::Key::Q);
    assert_eq!(h.state().cine(), (25.0, false), "a new layout stops cine");
}

/// The patient point under screen position `pos` in the active viewport.
fn patient_under(h: &Harness<'_, OverreadApp>, pos: egui::Pos2) -> DVec3 {
    let view = h.state().current_view().unwrap();
    let (x, y) = h.state().cell_grid(h.state().active()).unwrap().pixel(pos);
    view.patient_at_pixel(x - 0.5, y - 0.5)
}

/// A high-resolution wheel's eighths of a notch scroll one slice for eight of them (not one
/// each); a zoom keeps the patient point under the pointer where it is; Fit brings the whole
/// image back, centred, on the same slice.
#[test]
fn the_wheel_zoom_and_fit_keep_the_reader_in_place() {
    let dir = tempdir();
    let mut h = open_app(dir.path());
    let rect = h.state().viewport_rect().unwrap();
    let centre_before = h.state().viewport().unwrap().center_mm;
    h.event(egui::Event::PointerMoved(rect.center()));
    h.step();
    let (k, n) = slice(&h);
    let eighth = egui::Event::MouseWheel {
        unit: egui::MouseWheelUnit::Line,
        delta: egui::vec2(0.0, -0.125),
        phase: egui::TouchPhase::Move,
        source: egui::MouseWheelSource::Wheel,
        modifiers: egui::Modifiers::NONE,
    };
    for _ in 0..7 {
        h.event(eighth.clone());
        h.step();
    }
    assert_eq!(slice(&h), (k, n), "seven eighths of a notch: no slice yet");
    h.event(eighth);
    h.step();
    assert_eq!(slice(&h), (k + 1, n), "the eighth eighth: one slice");

    let at = rect.center() + egui::vec2(rect.width() / 5.0, -rect.height() / 6.0);
    h.event(egui::Event::PointerMoved(at));
    h.step();
    let under = patient_under(&h, at);
    h.event(egui::Event::Zoom(2.0));
    h.step();
    h.step();
    assert_eq!(h.state().viewport().unwrap().zoom, 2.0);
    let moved = (patient_under(&h, at) - under).length();
    assert!(moved < 1e-6, "the point under the pointer moved {moved} mm");

    // 1:1: one image pixel a screen pixel, whatever the zoom was (2 here).
    press(&mut h, egui::Key::Num9);
    let info = h.state().volume_info().unwrap();
    let one = overread::viewer::magnification(info, &h.state().current_view().unwrap());
    assert!((one - 1.0).abs() < 1e-9, "1:1 shows {one}");

    press(&mut h, egui::Key::F);
    let v = h.state().viewport().unwrap();
    assert_eq!(v.zoom, 1.0);
    // In the axial plane: x and y (z is the slice's, one step on).
    let off = (DVec3::from(v.center_mm) - DVec3::from(centre_before)).truncate();
    assert!(off.length() < 1e-9, "Fit re-centres ({off} mm off)");
    assert_eq!(slice(&h), (k + 1, n), "on the same slice");
}

/// A thumbnail is the middle slice, windowed: air black, the body in greys.
#[test]
fn thumbnails_show_the_middle_slice() {
    let dir = tempdir();
    write_series(&spec(), dir.path()).unwrap();
    let report = imaging::scan(&[dir.path().to_path_buf()]);
    let patients = imaging::group(&report.instances);
    let stack = imaging::default_stack(&patients).unwrap();
    let image = overread::app::thumbnail(stack, 64).unwrap();
    assert_eq!(image.size, [64, 64]);
    let grey: Vec<u8> = image.pixels.iter().map(|c| c.r()).collect();
    assert_eq!(grey[0], 0, "the corner is air");
    let distinct: std::collections::HashSet<u8> = grey.iter().copied().collect();
    assert!(distinct.len() > 4, "{} grey levels", distinct.len());
    // The middle of the body (soft tissue, 40 HU) is brighter than the lungs either side.
    let at = |x: usize, y: usize| grey[y * 64 + x];
    assert!(at(32, 32) > at(16, 32) && at(32, 32) > at(48, 32));
}

/// What the window shows is what the reference renderer computes: the viewport's pixels in a
/// rendered frame of the app equal `render::cpu` for the same view to one grey level, before
/// and after a window change (which redoes only the display pass).
#[test]
fn the_window_shows_the_reference_image() {
    let dir = tempdir();
    let mut h = open_app(dir.path());
    assert_window_shows_reference(&mut h, "as opened");
    press(&mut h, egui::Key::Num5);
    assert_window_shows_reference(&mut h, "lung window");
}

/// In a window narrower than the side panels need, the central panel lies past the window's
/// edge: no viewport is laid out there (egui would clamp the image to the window while the
/// overlays and the pointer used the whole cell), keys and frames go on without one, and the
/// viewport comes back, showing the reference image, when the window widens.
#[test]
fn a_viewport_past_the_window_edge_is_not_laid_out() {
    let dir = tempdir();
    let mut h = open_app_sized(dir.path(), Settings::default(), egui::vec2(1000.0, 600.0));
    assert!(h.state().viewport_rect().is_some());
    h.set_size(egui::vec2(560.0, 500.0));
    h.step();
    h.step();
    let window = egui::Rect::from_min_size(egui::Pos2::ZERO, egui::vec2(560.0, 500.0));
    if let Some(rect) = h.state().viewport_rect() {
        assert!(
            window.contains_rect(rect),
            "{rect:?} lies outside the window"
        );
    }
    press(&mut h, egui::Key::ArrowDown);
    press(&mut h, egui::Key::Num5);
    // Wide enough for the reference grid to clear the corner texts (the browser keeps the
    // width it took while the window was narrow).
    h.set_size(egui::vec2(1600.0, 800.0));
    h.step();
    h.step();
    let rect = h.state().viewport_rect().unwrap();
    assert!(rect.width() > 500.0, "{rect:?}");
    assert_window_shows_reference(&mut h, "after the window widened");
}

/// The active viewport's pixels in the window equal `render::cpu`'s image of the same view to
/// one grey level, on a grid away from the overlay text, the orientation markers (centred on
/// the edges) and the MPR lines (through the centre).
fn assert_window_shows_reference(h: &mut Harness<'_, OverreadApp>, what: &str) {
    let w = Window::of(h);
    let mut compared = 0;
    for gy in (1..8).filter(|g| *g != 4) {
        for gx in (1..8).filter(|g| *g != 4) {
            let (x, y) = (w.view.width * gx / 8, w.view.height * gy / 8);
            let (shown, expected) = (w.at(x, y), w.reference.get_rgb(x, y));
            for c in 0..3 {
                assert!(
                    u16::from(shown[c]).abs_diff(expected[c]) <= 1,
                    "{what}: pixel ({x},{y}) channel {c}: shown {shown:?}, reference {expected:?}"
                );
            }
            compared += 1;
        }
    }
    assert_eq!(compared, 36);
}

/// The window as rendered now, the active view, and `render::cpu`'s image of that view.
struct Window {
    shot: image::RgbaImage,
    /// The view's first pixel in the window: where egui puts the paint callback's viewport,
    /// the cell's corner rounded to whole pixels.
    origin: (u32, u32),
    view: overread::render::SliceView,
    reference: RenderedImage,
}

impl Window {
    fn of(h: &mut Harness<'_, OverreadApp>) -> Window {
        h.step();
        let shot = h.render().unwrap();
        let app = h.state();
        let view = app.current_view().unwrap();
        let rect = app.viewport_rect().unwrap();
        let reference = overread::render::cpu::render(
            app.volume_info().unwrap(),
            app.loaded_voxels().unwrap(),
            &view,
            &app.viewport().unwrap().display,
        )
        .unwrap();
        Window {
            shot,
            origin: (rect.min.x.round() as u32, rect.min.y.round() as u32),
            view,
            reference,
        }
    }

    /// The window's pixel at the view's pixel (x, y).
    fn at(&self, x: u32, y: u32) -> [u8; 4] {
        self.shot.get_pixel(self.origin.0 + x, self.origin.1 + y).0
    }
}

/// A colour series (the real oblique RGB MR of the dicom2nifti set) opens and shows in colour:
/// the window equals the reference renderer's colour image in every channel, the image has
/// coloured pixels, and a point probe on it gives a colour, not a number.
#[test]
fn a_colour_series_shows_in_colour() {
    let Some(root) = crate::support::shared_dicom() else {
        return;
    };
    let dir = root.join("mr/dicom2nifti_multivendor/dicom/generic/rgb/001");
    let mut h = harness_on(&dir, Settings::default(), egui::vec2(1200.0, 800.0));
    assert!(h.state().volume_info().unwrap().colour);
    assert_window_shows_reference(&mut h, "colour");
    let w = Window::of(&mut h);
    let (view, reference) = (&w.view, &w.reference);
    assert!(reference.colour.is_some());
    // And the white matter is red in the window, as in the reference.
    let (mut red_shown, mut red_expected) = (0, 0);
    for y in (view.height / 4..view.height * 3 / 4).step_by(3) {
        for x in (view.width / 4..view.width * 3 / 4).step_by(3) {
            let (shown, expected) = (w.at(x, y), reference.get_rgb(x, y));
            red_shown += usize::from(shown[0] > shown[1].saturating_add(30));
            red_expected += usize::from(expected[0] > expected[1] + 30);
        }
    }
    assert!(
        red_expected > 100,
        "only {red_expected} red pixels in the reference"
    );
    assert!(
        red_shown.abs_diff(red_expected) * 50 < red_expected,
        "{red_shown} red pixels shown, {red_expected} in the reference"
    );

    // A probe at the centre of voxel (20, 30, 2) gives that voxel's colour.
    let app = h.state();
    let (info, voxels) = (app.volume_info().unwrap(), app.loaded_voxels().unwrap());
    let probe = overread::viewer::measure::Measurement {
        id: 1,
        shape: Shape::Probe {
            at: info.geometry.patient_from_voxel_affine([20.0, 30.0, 2.0]),
        },
        frame_of_reference_uid: None,
        stack_id: None,
    };
    let Value::Colour(Some(rgb)) = probe.value(info, voxels) else {
        panic!("a probe on a colour series gives a colour")
    };
    assert_eq!(Some(rgb), voxels.rgb(20, 30, 2));
}

/// A series of two volumes (a soft-tissue and a bone reconstruction) lists each with what
/// tells it apart: two rows that read alike could not be told apart.
#[test]
fn the_browser_says_what_tells_a_series_volumes_apart() {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    let dir = tempdir();
    let soft = dir.path().join("soft");
    let bone = dir.path().join("bone");
    write_series(&spec(), &soft).unwrap();
    std::fs::create_dir(&bone).unwrap();
    let kernel = |k: &str| {
        DataElement::new(
            tags::CONVOLUTION_KERNEL,
            VR::SH,
            PrimitiveValue::from(k.to_string()),
        )
    };
    for (n, entry) in std::fs::read_dir(&soft).unwrap().enumerate() {
        let path = entry.unwrap().path();
        let mut obj = dicom_object::open_file(&path).unwrap();
        obj.put(kernel("STANDARD"));
        obj.write_to_file(&path).unwrap();
        obj.put(kernel("BONE"));
        obj.put(DataElement::new(
            tags::SOP_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from(format!("2.25.{}", 777_000 + n)),
        ));
        obj.write_to_file(bone.join(format!("{n}.dcm"))).unwrap();
    }
    let h = harness_on(dir.path(), Settings::default(), egui::vec2(1200.0, 800.0));
    assert!(h.query_by_label_contains("— kernel STANDARD").is_some());
    assert!(h.query_by_label_contains("— kernel BONE").is_some());
}

/// The toolbar's slab controls set the active view's slab thickness and projection; the window
/// shows the reference renderer's slab of the same view, which differs from the thin plane.
#[test]
fn the_slab_controls_give_the_reference_slab() {
    let dir = tempdir();
    let mut h = open_app(dir.path());
    press(&mut h, egui::Key::Num5);
    let thin = h.render().unwrap();
    h.get_by_label("Slab").set_value_accesskit(12.0);
    h.step();
    h.get_by_label("Slab projection").click();
    h.step();
    h.step();
    h.get_by_label("MinIP").click();
    h.step();
    h.step();
    let v = h.state().viewport().unwrap().clone();
    assert_eq!(
        (v.slab_mm, v.slab_mode),
        (12.0, overread::render::SlabMode::MinIp)
    );
    let overlay = v.overlay(h.state().volume_info().unwrap());
    assert_eq!(overlay.slab_mm, 12.0, "the overlay names the slab");
    assert_window_shows_reference(&mut h, "12 mm MinIP");
    let slab = h.render().unwrap();
    let rect = h.state().viewport_rect().unwrap();
    let differs = (0..rect.height() as u32)
        .step_by(4)
        .flat_map(|y| (0..rect.width() as u32).step_by(4).map(move |x| (x, y)))
        .filter(|&(x, y)| {
            let (sx, sy) = (rect.min.x as u32 + x, rect.min.y as u32 + y);
            thin.get_pixel(sx, sy) != slab.get_pixel(sx, sy)
        })
        .count();
    // The phantom changes little along z (the nodule's rim, the lung edges): some pixels.
    assert!(differs > 0, "the slab looks exactly like the thin plane");

    // A probe placed on the slab reads one voxel of its own plane, not the MinIP shown under
    // it: its label says so; off the slab it does not need to.
    h.get_by_label("Probe").click();
    h.step();
    let centre = DVec3::from(h.state().current_view().unwrap().center_mm);
    click_patient(&mut h, centre);
    let probe = h.state().measurements().last().unwrap().clone();
    let on_slab = h.state().measurement_label(&probe, 0).unwrap();
    assert!(on_slab.ends_with(" (its plane, not the slab)"), "{on_slab}");
    h.get_by_label("Slab").set_value_accesskit(0.0);
    h.step();
    let thin = h.state().measurement_label(&probe, 0).unwrap();
    assert!(!thin.contains("slab"), "{thin}");
}

/// Open the report panel and start from its first template (CT chest).
fn open_report_with_template(h: &mut Harness<'_, OverreadApp>) {
    h.get_by_label("Report").click();
    h.step();
    h.get_by_label("Use template").click();
    h.step();
}

/// Dictate a WAV file into the report panel and wait (up to 2 minutes) for the text.
fn dictate(h: &mut Harness<'_, OverreadApp>, wav: &Path) {
    let ctx = h.ctx.clone();
    h.state_mut().report.dictate_wav(wav, &ctx);
    let start = Instant::now();
    while h.state().report.busy() {
        h.step();
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "dictation did not finish: {}",
            h.state().report.message
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    h.step();
    h.step();
}

/// The report panel: a template's fields listed as checks; a dictated WAV (whisper on a
/// background thread, the real shared model) fills the field under the cursor; the checks
/// follow.
#[test]
fn the_report_panel_fills_a_template_by_dictation_and_lists_the_checks() {
    let (Some(model), Some(dictation)) =
        (shared("models/ggml-tiny.en-q8_0.bin"), shared("dictation"))
    else {
        return;
    };
    let dir = tempdir();
    let settings = Settings {
        dictation_model: Some(model),
        ..Settings::default()
    };
    let mut h = open_app_with(dir.path(), settings);
    open_report_with_template(&mut h);
    h.step();
    assert!(
        h.query_by_label_contains("The field [lungs] is not filled")
            .is_some()
    );
    assert!(
        h.query_by_label_contains("The impression is empty")
            .is_some()
    );
    assert!(h.query_by_label_contains("ready to sign").is_none());

    dictate(&mut h, &dictation.join("flite/d09.wav"));
    let findings = h.state().report.draft.findings.clone();
    assert!(
        findings.starts_with("Lungs and airways: The gallbladder is distended with multiple calcified gallstones.\nPleura: [pleura]"),
        "{findings}\n{}",
        h.state().report.message
    );
    assert!(
        h.query_by_label_contains("The field [lungs] is not filled")
            .is_none()
    );
    assert!(
        h.query_by_label_contains("The field [pleura] is not filled")
            .is_some()
    );
    assert!(h.query_by_label_contains("transcribed in").is_some());
}

/// A case server on loopback (SQLite in `dir`) with radiologist `rad1` (password
/// `password-123`, a registered key sealed in `dir/rad1.key` under "a long passphrase") and
/// `cases` chest cases assigned to rad1, each with a synthetic study, reading.
struct ReadingServer {
    rt: tokio::runtime::Runtime,
    db: case_server::Db,
    base: String,
    cases: Vec<String>,
    /// Each case's study (Study Instance UID).
    studies: Vec<String>,
    key: case_protocol::SigningKey,
    key_file: std::path::PathBuf,
}

impl ReadingServer {
    fn start(dir: &Path, cases: usize) -> ReadingServer {
        use case_protocol::{CaseStatus, Role, SigningKey};
        use overread::cases::EncryptedKey;
        let rt = tokio::runtime::Runtime::new().unwrap();
        let key = SigningKey::generate();
        let (db, ids, studies, base) = rt.block_on(async {
            let url = case_server::db::scratch_database(dir).await.unwrap();
            let db = case_server::Db::open(&url).await.unwrap();
            db.add_user(
                "rad1",
                Role::Radiologist,
                "Dr One",
                &["chest".into()],
                "password-123",
            )
            .await
            .unwrap();
            db.add_key("rad1", &key.verifying_key().to_base64())
                .await
                .unwrap();
            let store =
                case_server::Store::open(dir.join("objects").to_str().unwrap()).unwrap();
            let (mut ids, mut studies) = (Vec::new(), Vec::new());
            // Case i holds the synthetic study of seed i + 1: case 0's is the study the tests
            // open from a folder (`spec()`, seed 1, the same UIDs).
            for i in 0..cases {
                let case = db
                    .create_case(
                        &serde_json::from_value(serde_json::json!({
                        "patient": {"name": "DOE^J", "id": format!("M{i}"), "birth_date": "1970-01-01", "sex": "F"},
                        "referral": {"physician": {"name": "Dr R", "fax": "+14165550100", "institution": null},
                                     "clinical_question": "Nodule?", "document_sha256": null},
                        "subspecialty": "chest", "priority": "routine"}))
                        .unwrap(),
                    )
                    .await
                    .unwrap();
                db.assign(&case.id, "rad1").await.unwrap();
                let study = case_server::intake::store_synthetic_study(
                    &db,
                    &store,
                    &case.id,
                    i as u64 + 1,
                )
                .await
                .unwrap();
                studies.push(study);
                db.set_status(&case.id, CaseStatus::Ready).await.unwrap();
                db.set_status(&case.id, CaseStatus::Reading).await.unwrap();
                ids.push(case.id);
            }
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            tokio::spawn(case_server::serve(
                case_server::Server::new(db.clone(), store),
                listener,
            ));
            (db, ids, studies, base)
        });
        let key_file = dir.join("rad1.key");
        EncryptedKey::seal(&key, "a long passphrase")
            .unwrap()
            .write(&key_file)
            .unwrap();
        ReadingServer {
            rt,
            db,
            base,
            cases: ids,
            studies,
            key,
            key_file,
        }
    }

    /// The settings of rad1's workstation for this server.
    fn settings(&self, dir: &Path, model: Option<std::path::PathBuf>) -> Settings {
        Settings {
            dictation_model: model,
            case_server: Some(self.base.clone()),
            signing_key: Some(self.key_file.clone()),
            outbox: Some(dir.join("outbox")),
            macros_dir: Some(dir.join("macros")),
            user: Some("rad1".into()),
            ..Settings::default()
        }
    }

    /// A final report of case `case` (an index into `cases`) by rad1, signed as in an earlier
    /// session and left in the outbox under `dir` (the server was away). Returns its hash.
    fn kept_final(&self, dir: &Path, case: usize, findings: &str, impression: &str) -> String {
        let report = case_protocol::Report {
            case_id: self.cases[case].clone(),
            kind: case_protocol::ReportKind::Final,
            author: case_protocol::Author {
                user_id: "rad1".into(),
                display_name: "Dr One".into(),
            },
            key_id: self.key.verifying_key().id().0,
            signed_at: case_protocol::rfc3339_utc(case_protocol::unix_now()),
            study_instance_uids: vec![self.studies[case].clone()],
            findings: findings.into(),
            impression: impression.into(),
            measurements: Vec::new(),
        };
        let signed = case_protocol::sign_report(report, &self.key).unwrap();
        overread::cases::Outbox::open(&dir.join("outbox"))
            .unwrap()
            .enqueue(&signed)
            .unwrap()
    }

    /// Every stored report: (hash, case, signed JSON), oldest first.
    fn reports(&self) -> Vec<(String, String, case_protocol::SignedReport)> {
        self.rt.block_on(async {
            sqlx::query_as::<_, (String, String, String)>(
                "SELECT report_hash, case_id, signed_json FROM reports ORDER BY received_at, report_hash",
            )
            .fetch_all(&self.db.pool)
            .await
            .unwrap()
            .into_iter()
            .map(|(h, c, j)| (h, c, serde_json::from_str(&j).unwrap()))
            .collect()
        })
    }

    /// The sessions (logins) `user` holds on the server.
    fn sessions(&self, user: &str) -> i64 {
        self.rt.block_on(async {
            sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE user_id = $1")
                .bind(user)
                .fetch_one(&self.db.pool)
                .await
                .unwrap()
        })
    }

    fn status(&self, case: &str) -> case_protocol::CaseStatus {
        self.rt
            .block_on(self.db.case_summary(case))
            .unwrap()
            .unwrap()
            .status
    }
}

/// Sign in on the worklist (rad1's password) and step until the outbox's sender has delivered
/// `n` reports and holds none.
fn sign_in_until_delivered(h: &mut Harness<'_, OverreadApp>, n: usize) {
    h.state_mut().worklist.password = "password-123".into();
    h.get_by_label("Sign in").click();
    step_until(h, 60, "the outbox did not deliver", |app| {
        app.report
            .outbox_status()
            .is_some_and(|s| s.pending == 0 && s.delivered.len() == n)
    });
}

/// Click `button` ("Sign and send" or "Sign and send addendum"), step until signing ends and
/// return the server's receipt (failing with the panel's message when there is none).
fn sign_until_received(h: &mut Harness<'_, OverreadApp>, button: &str) -> case_protocol::Receipt {
    h.get_by_label(button).click();
    h.step();
    step_until(h, 60, "signing", |app| !app.report.signing());
    h.state()
        .report
        .receipt
        .clone()
        .unwrap_or_else(|| panic!("{}", h.state().report.sign_message))
}

/// Step until `done`, failing with `what` after `secs` seconds.
fn step_until(
    h: &mut Harness<'_, OverreadApp>,
    secs: u64,
    what: &str,
    done: impl Fn(&OverreadApp) -> bool,
) {
    let start = Instant::now();
    while !done(h.state()) {
        h.step();
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "{what}: {} / {}",
            h.state().report.message,
            h.state().report.sign_message
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    h.step();
}

/// The whole loop in the real app: measure on the phantom, dictate a WAV into the report
/// (whisper with the real model), insert the measurement, go back to it from the report, see
/// the text to be signed, sign with the sealed key (checks knowingly overridden), and submit
/// through the outbox to a real case server on loopback: the receipt is shown and the server
/// holds exactly that report, with the measurement's place in the image. Then an addendum to
/// it, signed and received the same way.
#[test]
fn dictate_measure_sign_and_submit_to_a_real_server() {
    use case_protocol::{CaseStatus, ReportKind};
    let (Some(model), Some(dictation)) =
        (shared("models/ggml-tiny.en-q8_0.bin"), shared("dictation"))
    else {
        return;
    };
    let dir = tempdir();
    let server = ReadingServer::start(dir.path(), 1);
    let case_id = server.cases[0].clone();
    // A reading-room display is at least 1080 points high; the report panel needs the room.
    let mut h = open_app_sized(
        &dir.path().join("study"),
        server.settings(dir.path(), Some(model)),
        egui::vec2(1600.0, 1080.0),
    );
    measure_nodule_to_spine(&mut h);
    let m = h.state().measurements()[0].clone();
    let Some(Value::LengthMm(mm)) = h.state().measurement_value(&m) else {
        panic!("{m:?}")
    };

    open_report_with_template(&mut h);
    dictate(&mut h, &dictation.join("flite/d09.wav"));
    h.get_by_label_contains(&format!("Insert #{}", m.id))
        .click();
    h.step();
    let shown = format!("{mm:.1} mm");
    assert!(
        h.state().report.draft.findings.contains(&shown),
        "{}",
        h.state().report.draft.findings
    );

    // The link back to the image: scrolled and turned away, "Show" brings the plane back.
    h.state_mut().show_plane(Plane::Coronal, 30.0);
    h.step();
    assert!(h.state().visible_measurements().is_empty());
    h.get_by_label(&format!("Show #{}", m.id)).click();
    h.step();
    let v = h.state().viewport().unwrap().clone();
    assert_eq!(v.plane, Plane::Axial);
    assert!(v.position_mm().abs() < 1e-6, "{}", v.position_mm());
    assert_eq!(h.state().visible_measurements(), vec![m.id]);

    {
        let form = &mut h.state_mut().report.form;
        assert_eq!(form.user, "rad1");
        form.case_id = case_id.clone();
        form.display_name = "Dr One".into();
        form.passphrase = "a long passphrase".into();
        form.password = "password-123".into();
    }
    h.step();
    // Fields are left: signing waits for the radiologist to override knowingly.
    assert!(h.query_all_by_label_contains("is not filled").count() > 1);
    h.get_by_label("I have seen these checks and sign anyway")
        .click();
    h.step();
    assert!(h.state().report.form.override_checks);
    h.get_by_label("The text to be signed").click();
    // The signing area grows; the button stays inside the window in every frame.
    for _ in 0..4 {
        h.step();
        let sign = h.get_by_label("Sign and send").rect();
        assert!(h.ctx.content_rect().contains_rect(sign), "{sign:?}");
    }
    assert!(
        h.query_by_label_contains("gallbladder is distended")
            .is_some()
    );
    let receipt = sign_until_received(&mut h, "Sign and send");
    assert!(!receipt.duplicate);
    assert_eq!(receipt.case_id, case_id);
    assert!(
        h.query_by_label_contains("Signed and received by the case server")
            .is_some()
    );
    // The passphrase and password are not kept.
    assert!(
        h.state().report.form.passphrase.is_empty() && h.state().report.form.password.is_empty()
    );

    let stored = server.reports();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].0, receipt.report_hash);
    let signed = &stored[0].2;
    assert!(signed.report.findings.contains("gallbladder is distended"));
    assert!(signed.report.findings.contains(&shown));
    assert_eq!(signed.report.measurements.len(), 1);
    let quoted = &signed.report.measurements[0];
    assert!((quoted.value - mm).abs() < 0.051);
    assert_eq!(quoted.kind, "length");
    assert_eq!(quoted.points_mm, m.shape.points());
    assert_eq!(quoted.frame_of_reference_uid, m.frame_of_reference_uid);
    // The series measured, as the files name it.
    let scanned = imaging::group(&imaging::scan(&[dir.path().join("study")]).instances);
    let series = &scanned[0].studies[0].series;
    assert_eq!(series.len(), 1);
    assert_eq!(
        quoted.series_instance_uid.as_deref(),
        Some(series[0].uid.as_str())
    );
    assert_eq!(server.status(&case_id), CaseStatus::Reported);
    assert!(
        std::fs::read_dir(dir.path().join("outbox/pending"))
            .unwrap()
            .next()
            .is_none()
    );

    // An addendum: the signed text stays as signed; the new text amends it.
    assert!(
        h.query_by_label(&format!("Signed report of case {case_id}"))
            .is_some()
    );
    assert!(h.query_by_label_contains("The addendum is empty").is_some());
    h.state_mut().report.draft.findings =
        "Comparison with the outside CT of last year: the nodule is unchanged.".into();
    {
        let form = &mut h.state_mut().report.form;
        form.passphrase = "a long passphrase".into();
        form.password = "password-123".into();
    }
    h.step();
    h.step();
    assert!(h.query_by_label_contains("ready to sign").is_some());
    h.get_by_label("Sign and send addendum").click();
    h.step();
    step_until(&mut h, 60, "signing the addendum", |app| {
        !app.report.signing()
    });
    let addendum_receipt = h
        .state()
        .report
        .receipt
        .clone()
        .unwrap_or_else(|| panic!("{}", h.state().report.sign_message));
    assert!(
        h.query_by_label_contains("Addendum signed and received")
            .is_some()
    );
    let stored = server.reports();
    assert_eq!(stored.len(), 2);
    let addendum = stored
        .iter()
        .find(|(hash, ..)| *hash == addendum_receipt.report_hash)
        .unwrap();
    assert_eq!(
        addendum.2.report.kind,
        ReportKind::Addendum {
            amends: receipt.report_hash.clone()
        }
    );
    assert!(addendum.2.report.findings.contains("nodule is unchanged"));
    assert_eq!(server.status(&case_id), CaseStatus::Reported);
}

/// Signing in on the worklist starts the outbox's sender with that login: a report signed
/// earlier and left in the outbox (the server was away) is delivered, and reports signed now
/// need no password again.
#[test]
fn signing_in_sends_what_the_outbox_kept_and_signing_uses_the_login() {
    let dir = tempdir();
    let server = ReadingServer::start(dir.path(), 2);
    // The report kept is for the second case; the one signed now for the first, whose study
    // is the one open (the server refuses a report naming another case's study).
    let (kept_case, new_case) = (server.cases[1].clone(), server.cases[0].clone());
    // Signed in an earlier session; never sent.
    let kept_hash = server.kept_final(dir.path(), 1, "Findings of the kept report.", "Kept.");

    let mut h = open_app_sized(
        &dir.path().join("study"),
        server.settings(dir.path(), None),
        egui::vec2(1600.0, 1080.0),
    );
    assert!(server.reports().is_empty());
    sign_in_until_delivered(&mut h, 1);
    let stored = server.reports();
    assert_eq!(stored.len(), 1);
    assert_eq!((&stored[0].0, &stored[0].1), (&kept_hash, &kept_case));

    h.get_by_label("Report").click();
    h.step();
    assert!(h.query_by_label_contains("Outbox: all sent").is_some());
    // Signed in: no password field, none needed.
    assert!(h.query_by_label("Server password").is_none());
    {
        let r = &mut h.state_mut().report;
        r.draft.findings = "No nodule.".into();
        r.draft.impression = "Normal chest CT.".into();
        r.form.case_id = new_case.clone();
        r.form.display_name = "Dr One".into();
        r.form.passphrase = "a long passphrase".into();
    }
    // The checks went away: the signing area shrinks over the next frame.
    h.step();
    h.step();
    let receipt = sign_until_received(&mut h, "Sign and send");
    assert_eq!(receipt.case_id, new_case);
    assert_eq!(server.reports().len(), 2);

    // Signing out ends the login on the server too, and the sign-in form comes back.
    assert_eq!(server.sessions("rad1"), 1);
    h.get_by_label("Sign out").click();
    h.step();
    // The draft is put away (the editors emptied): the panels settle over the next frame.
    h.step();
    assert!(h.state().report.setup.token.is_none());
    assert!(h.query_by_label("Sign in").is_some());
    let start = Instant::now();
    while server.sessions("rad1") != 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the login did not end"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A case reported in an earlier session stays on its radiologist's worklist; opened from it,
/// the report panel holds the final report the server has (verified there), and what is
/// signed now is an addendum to that report.
#[test]
fn a_case_reported_earlier_opens_from_the_worklist_for_an_addendum() {
    use case_protocol::{CaseStatus, ReportKind};
    let dir = tempdir();
    let server = ReadingServer::start(dir.path(), 1);
    let case = server.cases[0].clone();
    // The final report, signed in an earlier session, waiting in the outbox.
    let final_hash = server.kept_final(
        dir.path(),
        0,
        "A 6 mm nodule in the right upper lobe.",
        "Small nodule.",
    );
    let mut h = open_app_sized(
        &dir.path().join("study"),
        server.settings(dir.path(), None),
        egui::vec2(1600.0, 1080.0),
    );
    sign_in_until_delivered(&mut h, 1);
    assert_eq!(server.status(&case), CaseStatus::Reported);
    h.get_by_label("Refresh").click();
    step_until(
        &mut h,
        60,
        "the worklist did not list the reported case",
        |app| {
            app.worklist
                .cases
                .iter()
                .any(|c| c.id == case && c.status == CaseStatus::Reported)
        },
    );
    h.get_by_label("Open").click();
    step_until(&mut h, 60, "the case did not open", |app| {
        app.report.amending().is_some()
    });
    let f = h.state().report.amending().cloned().unwrap();
    assert_eq!(f.report_hash, final_hash);
    assert_eq!(f.findings, "A 6 mm nodule in the right upper lobe.");

    h.get_by_label("Report").click();
    h.step();
    assert!(
        h.query_by_label(&format!("Signed report of case {case}"))
            .is_some()
    );
    {
        let r = &mut h.state_mut().report;
        r.draft.findings = "Addendum: the nodule is 7 mm on thin sections.".into();
        r.form.display_name = "Dr One".into();
        r.form.passphrase = "a long passphrase".into();
    }
    h.step();
    h.step();
    // The draft is kept until it is signed...
    h.state_mut().report.keep_draft(true);
    let drafts = crate::support::test_drafts();
    step_until(&mut h, 20, "the draft was not kept", |_| {
        kept_drafts(&drafts).len() == 1
    });
    let receipt = sign_until_received(&mut h, "Sign and send addendum");
    // ...and not once it is signed (the signing removed its file with the report in the
    // outbox; a crash after that cannot give it back as unsigned).
    let kept = kept_drafts(&drafts);
    assert!(kept.is_empty(), "{kept:?}");
    // Sent at once with the worklist's login (no password typed), not left for the outbox's
    // sender: the signing knows whose login it is.
    let said = h.state().report.sign_message.clone();
    assert!(
        said.starts_with("Addendum signed and received by the case server"),
        "{said}"
    );
    let stored = server.reports();
    assert_eq!(stored.len(), 2);
    let addendum = stored
        .iter()
        .find(|(hash, ..)| *hash == receipt.report_hash)
        .unwrap();
    assert_eq!(
        addendum.2.report.kind,
        ReportKind::Addendum { amends: final_hash }
    );
    assert!(addendum.2.report.findings.contains("7 mm on thin sections"));
}

/// Not a test: the app half of the push-to-talk test below, run by it as a child process whose
/// HOME holds an `.asoundrc` making ALSA's default device the `file` plugin (capture reads
/// `in.raw`, playback writes `out.raw`; neither is paced in real time).
#[test]
#[ignore = "run as a child process by the push-to-talk test"]
fn push_to_talk_app_process() {
    use egui::accesskit::Role;
    use overread::report::Section;
    let Ok(home) = std::env::var("OVERREAD_TEST_ALSA_HOME") else {
        return;
    };
    let home = Path::new(&home);
    let pcm: Vec<i16> = std::fs::read(home.join("in.raw"))
        .unwrap()
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let dir = tempdir();
    let settings = Settings {
        dictation_model: shared("models/ggml-tiny.en-q8_0.bin"),
        // Every word is marked, so every word can be replayed.
        unsure_below: Some(1.01),
        dictation_mouse_button: Some("Extra1".into()),
        macros_dir: Some(dir.path().join("macros")),
        ..Settings::default()
    };
    let mut h = open_app_sized(
        &dir.path().join("study"),
        settings,
        egui::vec2(1600.0, 1080.0),
    );
    let key = |pressed| egui::Event::Key {
        key: egui::Key::F4,
        physical_key: None,
        pressed,
        repeat: false,
        modifiers: egui::Modifiers::NONE,
    };
    // F4 held: the panel opens and the microphone records.
    h.event(key(true));
    h.step();
    assert!(h.state().report.open);
    assert!(h.state().report.recording(), "{}", h.state().report.message);
    step_until(&mut h, 30, "recording", |app| {
        app.report.recorded_samples() >= pcm.len()
    });
    // Let go: what was said is transcribed.
    h.event(key(false));
    h.step();
    assert!(!h.state().report.recording());
    step_until(&mut h, 120, "transcribing", |app| !app.report.busy());
    let findings = h.state().report.draft.findings.clone();
    assert!(
        findings.starts_with("The gallbladder is distended with multiple calcified gallstones"),
        "{findings}"
    );
    // Every word is marked where it stands.
    let marked: Vec<String> = h
        .state()
        .report
        .marks(Section::Findings)
        .into_iter()
        .map(|r| findings[r].to_lowercase())
        .collect();
    assert_eq!(
        marked,
        [
            "the",
            "gallbladder",
            "is",
            "distended",
            "with",
            "multiple",
            "calcified",
            "gallstones"
        ]
    );
    assert!(h.query_by_label_contains("Words to confirm").is_some());

    // The samples a replay of unsure word `i` must play: its span, padded, from the capture.
    let expected = |app: &OverreadApp, i: usize| -> Vec<u8> {
        let (_, start, end) = app.report.unsure[i].audio.unwrap();
        let at = |s: f64| ((s.max(0.0) * 16_000.0).round() as usize).min(pcm.len());
        pcm[at(start - 0.15)..at(end + 0.15)]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect()
    };
    let first = expected(h.state(), 0);
    assert!(first.len() > 3200, "{}", first.len());
    // A click on the first word in the editor plays it.
    let editor = h
        .get_all_by_role(Role::MultilineTextInput)
        .next()
        .unwrap()
        .rect();
    click_at(&mut h, editor.min + egui::vec2(8.0, 10.0));
    assert!(h.state().report.playing(), "{}", h.state().report.message);
    step_until(&mut h, 30, "playing", |app| !app.report.playing());
    assert!(
        h.state().report.message.starts_with("playing"),
        "{}",
        h.state().report.message
    );
    let played = std::fs::read(home.join("out.raw")).unwrap();
    assert!(played.len() > first.len());
    assert!(
        played[..first.len()] == first[..],
        "the replay is not the word's audio"
    );
    assert!(played[first.len()..].iter().all(|b| *b == 0));

    // The list's Play button plays "gallbladder".
    let second = expected(h.state(), 1);
    h.get_by_label("Play \"gallbladder\"").click();
    h.step();
    step_until(&mut h, 30, "playing", |app| !app.report.playing());
    let played = std::fs::read(home.join("out.raw")).unwrap();
    assert!(
        played.windows(second.len()).any(|w| w == second),
        "the second replay is not in the output"
    );

    // The mouse button named in the settings does the same as the key.
    let viewport = h.state().viewport_rect().unwrap().center();
    let extra = |pressed| button_event(viewport, egui::PointerButton::Extra1, pressed);
    h.event(egui::Event::PointerMoved(viewport));
    h.event(extra(true));
    h.step();
    assert!(h.state().report.recording(), "{}", h.state().report.message);
    step_until(&mut h, 30, "recording", |app| {
        app.report.recorded_samples() >= pcm.len()
    });
    h.event(extra(false));
    h.step();
    step_until(&mut h, 120, "transcribing", |app| !app.report.busy());
    let findings = h.state().report.draft.findings.to_lowercase();
    assert_eq!(
        findings.matches("gallbladder is distended").count(),
        2,
        "{findings}"
    );
    println!("PUSH-TO-TALK CHECKED");
}

/// Push-to-talk through real ALSA: in a child process (its own HOME and ALSA configuration),
/// holding F4 records a dictation clip from ALSA's `file` plugin, letting go transcribes it
/// into the report with every word marked; a click on a marked word in the editor, and the
/// Play button beside a listed word, play exactly that word's audio (padded) out through ALSA,
/// sample for sample; holding the mouse button named in the settings dictates the same way.
#[test]
fn push_to_talk_dictates_through_alsa_and_a_marked_word_replays() {
    let (Some(_), Some(dictation)) = (shared("models/ggml-tiny.en-q8_0.bin"), shared("dictation"))
    else {
        return;
    };
    let mut reader = hound::WavReader::open(dictation.join("flite/d09.wav")).unwrap();
    assert_eq!(reader.spec().sample_rate, 16_000);
    let pcm: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
    let home = AlsaHome::new(&pcm);
    let run = home
        .command(std::env::current_exe().unwrap())
        .args([
            "app::push_to_talk_app_process",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("OVERREAD_TEST_ALSA_HOME", home.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success() && stdout.contains("PUSH-TO-TALK CHECKED"),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

/// The drafts kept on disk (one file each) in `dir`, read as JSON.
fn kept_drafts(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
                .collect()
        })
        .unwrap_or_default()
}

/// An unsigned draft outlives the window: kept on disk within a second of its last change
/// (the window here is dropped as a crash would leave it, without closing), offered back
/// when the study is opened again, restored by a click; and written at once when the window
/// closes.
#[test]
fn an_unsigned_draft_outlives_the_window_and_comes_back() {
    let dir = tempdir();
    let drafts = dir.path().join("drafts");
    let settings = || Settings {
        drafts_dir: Some(drafts.clone()),
        ..Settings::default()
    };
    let study = dir.path().join("study");
    let mut h = open_app_sized(&study, settings(), egui::vec2(1600.0, 1080.0));
    h.get_by_label("Report").click();
    h.step();
    h.state_mut().report.draft.findings = "A 14 mm nodule in the right upper lobe.".into();
    let start = Instant::now();
    while kept_drafts(&drafts).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the draft was not kept"
        );
        std::thread::sleep(Duration::from_millis(50));
        h.step();
    }
    let kept = kept_drafts(&drafts);
    assert_eq!(kept.len(), 1);
    assert_eq!(
        kept[0]["findings"],
        "A 14 mm nodule in the right upper lobe."
    );
    assert_eq!(kept[0]["case_id"], "");
    assert!(!kept[0]["study_uids"].as_array().unwrap().is_empty());
    drop(h);

    // The workstation again, on the same study: the draft is offered, not forced in.
    let mut h = harness_on(&study, settings(), egui::vec2(1600.0, 1080.0));
    h.get_by_label("Report").click();
    h.step();
    h.step();
    assert!(h.state().report.draft.findings.is_empty());
    assert!(
        h.query_by_label_contains("An unsigned draft of this study is kept")
            .is_some()
    );
    h.get_by_label("Restore the draft").click();
    h.step();
    assert_eq!(
        h.state().report.draft.findings,
        "A 14 mm nodule in the right upper lobe."
    );
    h.step();
    assert!(
        h.query_by_label_contains("An unsigned draft of this study is kept")
            .is_none()
    );

    // Named for its case and changed just before the window closes: on disk at once, under
    // the case (the study's file goes).
    h.state_mut().report.form.case_id = "C-17".into();
    h.state_mut().report.draft.impression = "Follow-up CT in 3 months.".into();
    eframe::App::on_exit(h.state_mut());
    let kept = kept_drafts(&drafts);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0]["case_id"], "C-17");
    assert_eq!(kept[0]["impression"], "Follow-up CT in 3 months.");
}

/// Saved macros in the panel: saved to the macro folder, inserted at the cursor, deleted.
#[test]
fn macros_are_saved_inserted_and_deleted_in_the_report_panel() {
    let dir = tempdir();
    let macros = dir.path().join("macros");
    let settings = Settings {
        macros_dir: Some(macros.clone()),
        ..Settings::default()
    };
    let mut h = open_app_sized(
        &dir.path().join("study"),
        settings,
        egui::vec2(1600.0, 1080.0),
    );
    h.get_by_label("Report").click();
    h.step();
    h.get_by_label("Macros (0)").click();
    h.step();
    h.step();
    for (field, text) in [
        ("Macro name", "Normal chest"),
        ("Macro text", "The lungs are clear."),
    ] {
        h.get_by_label(field).focus();
        h.step();
        h.get_by_label(field).type_text(text);
        h.step();
    }
    assert_eq!(h.state().report.macro_name, "Normal chest");
    h.get_by_label("Save macro").click();
    h.step();
    assert_eq!(
        std::fs::read_to_string(macros.join("normal chest.txt")).unwrap(),
        "The lungs are clear."
    );
    assert!(
        h.query_by_label_contains("say \"insert macro normal chest\"")
            .is_some()
    );
    h.step();
    h.get_by_label("Insert normal chest").click();
    h.step();
    assert_eq!(h.state().report.draft.findings, "The lungs are clear.");
    h.get_by_label("Delete normal chest").click();
    h.step();
    assert!(!macros.join("normal chest.txt").exists());
    assert!(h.state().report.macros.is_empty());
}

/// A measurement is edited by dragging its handle, with whatever tool is active (here W/L,
/// whose drag would otherwise change the window): the point moves to where it is dropped, the
/// other stays, the value follows, and a report that quoted the old value is flagged.
#[test]
fn a_measurement_handle_drags_to_a_new_point() {
    let dir = tempdir();
    let mut h = open_app_sized(dir.path(), Settings::default(), egui::vec2(1600.0, 1080.0));
    show_axial_at_zero(&mut h);
    h.get_by_label("Length").click();
    h.step();
    let (a, b, moved) = (
        DVec3::new(-70.0, -20.0, 0.0),
        DVec3::new(0.0, 70.0, 0.0),
        DVec3::new(10.0, 40.0, 0.0),
    );
    click_patient(&mut h, a);
    click_patient(&mut h, b);
    let before = h.state().measurements()[0].clone();
    h.get_by_label("Report").click();
    h.step();
    h.get_by_label_contains(&format!("Insert #{}", before.id))
        .click();
    h.step();
    // Named as the text names it, so the check knows which number is this measurement.
    let quoted = format!("A nodule of {}.", h.state().report.draft.findings);
    h.state_mut().report.draft.findings.clone_from(&quoted);
    h.state_mut().report.linked[0].label = "nodule".into();
    let mismatch = |app: &OverreadApp| {
        app.report.checks().iter().any(|c| {
            matches!(
                c.kind,
                overread::report::CheckKind::MeasurementMismatch { .. }
            )
        })
    };
    assert!(!mismatch(h.state()), "{:?}", h.state().report.checks());

    h.get_by_label("W/L").click();
    h.step();
    let window = h.state().viewport().unwrap().display.clone();
    let (from, to) = (
        screen_of(&h, 0, DVec3::from(before.shape.points()[1])),
        screen_of(&h, 0, moved),
    );
    drag(&mut h, from, to, 5);
    h.step();

    let after = h.state().measurements()[0].clone();
    let points = after.shape.points();
    let pixel_mm = h.state().current_view().unwrap().pixel_mm;
    assert_eq!(points[0], before.shape.points()[0], "the other end stays");
    assert!(
        (DVec3::from(points[1]) - moved).length() <= pixel_mm,
        "{:?} vs {moved} (pixel {pixel_mm} mm)",
        points[1]
    );
    assert_eq!(
        h.state().viewport().unwrap().display,
        window,
        "W/L unchanged"
    );
    let Some(Value::LengthMm(mm)) = h.state().measurement_value(&after) else {
        panic!()
    };
    assert!((mm - DVec3::from(points[0]).distance(DVec3::from(points[1]))).abs() < 1e-9);
    // The report quoted the old length: the link now carries the new one, and the check sees
    // the disagreement.
    assert_eq!(h.state().report.draft.findings, quoted);
    assert!((h.state().report.linked[0].value - mm).abs() < 1e-9);
    assert!(
        h.state().report.checks().iter().any(|c| matches!(
            c.kind,
            overread::report::CheckKind::MeasurementMismatch { .. }
        )),
        "{:?}",
        h.state().report.checks()
    );
}

/// Oblique MPR: dragging a rotation handle on the coronal plane's line in the axial view 30
/// degrees around the crosshair turns the coronal and sagittal planes 30 degrees about the
/// axial normal: all three stay orthogonal and cross at the MPR point, the coronal plane now
/// contains the point where the handle was dropped, and the coronal cell shows the reference
/// renderer's image of its oblique plane.
#[test]
fn a_rotation_handle_turns_the_other_planes_for_oblique_mpr() {
    let dir = tempdir();
    let mut h = open_app(dir.path());
    press(&mut h, egui::Key::M);
    h.step();
    let cursor = h.state().cursor_mm();
    let handle = h
        .state()
        .rotation_handles(0)
        .into_iter()
        .find(|(j, _)| *j == 1)
        .map(|(_, at)| at)
        .unwrap();
    let centre = screen_of(&h, 0, cursor);
    let turn = |t: f32| {
        let (s, c) = t.sin_cos();
        let v = handle - centre;
        centre + egui::vec2(v.x * c - v.y * s, v.x * s + v.y * c)
    };
    let scale = |h: &Harness<'_, OverreadApp>| -> Vec<f64> {
        (0..3)
            .map(|j| h.state().cell_view(j).unwrap().pixel_mm)
            .collect()
    };
    let scale_before = scale(&h);
    let angle = 30f32.to_radians();
    let arc: Vec<egui::Pos2> = (0..=15).map(|k| turn(angle * k as f32 / 15.0)).collect();
    drag_along(&mut h, &arc);
    let drop = turn(angle);
    h.step();
    // Each image kept its scale as its plane turned.
    for (before, after) in scale_before.iter().zip(scale(&h)) {
        assert!(
            (after / before - 1.0).abs() < 1e-9,
            "{before} -> {after} mm a pixel"
        );
    }

    let normals: Vec<DVec3> = h.state().viewports().iter().map(|v| v.normal()).collect();
    assert_eq!(normals[0], DVec3::Z, "the axial plane is not turned");
    for (a, b) in [(0, 1), (0, 2), (1, 2)] {
        assert!(normals[a].dot(normals[b]).abs() < 1e-9, "{normals:?}");
    }
    let turned = normals[1].angle_between(DVec3::Y).to_degrees();
    assert!((turned - 30.0).abs() < 1.0, "turned {turned} degrees");
    for v in h.state().viewports() {
        assert!((v.position_mm() - cursor.dot(v.normal())).abs() < 1e-6);
    }
    // The coronal plane passes through where the handle was dropped.
    let view = h.state().cell_view(0).unwrap();
    let (x, y) = h.state().cell_grid(0).unwrap().pixel(drop);
    let dropped = view.patient_at_pixel(x - 0.5, y - 0.5);
    assert!(
        normals[1].dot(dropped - cursor).abs() < 1.5 * view.pixel_mm,
        "{} mm off",
        normals[1].dot(dropped - cursor)
    );
    h.state_mut().set_active(1);
    assert_window_shows_reference(&mut h, "oblique coronal");
    // Reset (its key from the table) brings the standard planes back.
    let reset = h
        .state()
        .bindings()
        .iter()
        .find(|(_, a)| *a == overread::viewer::bindings::Action::Reset)
        .map(|(k, _)| *k)
        .unwrap();
    press(&mut h, reset);
    let planes: Vec<Plane> = h.state().viewports().iter().map(|v| v.plane).collect();
    assert_eq!(planes, vec![Plane::Axial, Plane::Coronal, Plane::Sagittal]);
    for v in h.state().viewports() {
        assert!((v.position_mm() - cursor.dot(v.normal())).abs() < 1e-6);
    }
}

/// The MPR crosshair stays within the volume: dragged a metre off to the patient's left, it
/// stops at the last voxel centre, and the sagittal plane through it still cuts the volume.
#[test]
fn the_crosshair_stays_within_the_volume() {
    let dir = tempdir();
    let mut h = open_app(dir.path());
    press(&mut h, egui::Key::M);
    let start = h.state().cursor_mm();
    h.state_mut()
        .set_cursor(start + DVec3::new(1000.0, 0.0, 0.0), Some(0));
    let info = h.state().volume_info().unwrap();
    let max_x = info
        .corners_mm()
        .iter()
        .map(|c| c[0])
        .fold(f64::NEG_INFINITY, f64::max);
    let cursor = h.state().cursor_mm();
    assert!((cursor.x - max_x).abs() < 1e-9, "{cursor} against {max_x}");
    assert!((cursor.y - start.y).abs() < 1e-9 && (cursor.z - start.z).abs() < 1e-9);
}

/// MPR left for one viewport and taken up again on the same series comes back as it was
/// left: its turned planes, and the point they cross at.
#[test]
fn mpr_comes_back_as_it_was_left() {
    let dir = tempdir();
    let mut h = open_app(dir.path());
    press(&mut h, egui::Key::M);
    let start = h.state().cursor_mm();
    let p = start + DVec3::new(20.0, -15.0, 5.0);
    h.state_mut().set_cursor(p, None);
    let (s, c) = 30f64.to_radians().sin_cos();
    h.state_mut()
        .rotate_mpr(0, p + DVec3::X * 50.0, p + DVec3::new(c, s, 0.0) * 50.0);
    h.step();
    let planes = |h: &Harness<'_, OverreadApp>| -> Vec<Plane> {
        h.state().viewports().iter().map(|v| v.plane).collect()
    };
    let turned = planes(&h);
    assert!(matches!(turned[1], Plane::Turned { .. }), "{turned:?}");
    press(&mut h, egui::Key::N);
    assert_eq!(h.state().viewports().len(), 1);
    press(&mut h, egui::Key::M);
    assert_eq!(planes(&h), turned);
    let off = (h.state().cursor_mm() - p).length();
    assert!(off < 1e-9, "the crosshair moved {off} mm");
    for v in h.state().viewports() {
        assert!((v.position_mm() - p.dot(v.normal())).abs() < 1e-9);
    }
}

/// Compare the part `rect` of the window with `tests/snapshots/NAME.png` (egui_kittest's
/// snapshot comparison at its default threshold, no pixel allowed to fail). A changed image
/// fails with `NAME.new.png` and `NAME.diff.png` beside the snapshot; after checking why it
/// changed, `UPDATE_SNAPSHOTS=1 cargo test` accepts it.
fn snapshot_region(h: &mut Harness<'_, OverreadApp>, name: &str, rect: egui::Rect) {
    let shot = h.render().unwrap();
    let ppp = h.ctx.pixels_per_point();
    let crop = image::imageops::crop_imm(
        &shot,
        (rect.min.x * ppp) as u32,
        (rect.min.y * ppp) as u32,
        (rect.width() * ppp) as u32,
        (rect.height() * ppp) as u32,
    )
    .to_image();
    egui_kittest::image_snapshot(&crop, name);
}

/// Small snapshot images of what a radiologist reads: the axial phantom in the lung window
/// with a length measurement, its orientation markers, corner text and scale bar; then oblique
/// MPR with its reference lines and rotation handles.
#[test]
fn snapshots_of_a_measured_axial_view_and_oblique_mpr() {
    let dir = tempdir();
    let mut h = open_app_sized(dir.path(), Settings::default(), egui::vec2(1280.0, 720.0));
    press(&mut h, egui::Key::Num5);
    measure_nodule_to_spine(&mut h);
    h.step();
    let rect = h.state().viewport_rect().unwrap();
    snapshot_region(&mut h, "axial_lung_length", rect);

    press(&mut h, egui::Key::M);
    h.step();
    let handle = h
        .state()
        .rotation_handles(0)
        .into_iter()
        .find(|(j, _)| *j == 1)
        .map(|(_, at)| at)
        .unwrap();
    drag(&mut h, handle, handle + egui::vec2(0.0, 40.0), 5);
    h.step();
    let cells = (0..3)
        .filter_map(|i| h.state().cell_rect(i))
        .reduce(|a, b| a.union(b))
        .unwrap();
    snapshot_region(&mut h, "mpr_oblique", cells);
}

/// A probe read on one volume of a series of several (echo 1 and echo 2 of one Series
/// Instance UID), shown over the other volume beside it, names the volume it was read on,
/// in the viewport and in the measurement list.
#[test]
fn a_value_read_on_one_volume_of_a_series_names_that_volume() {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    let dir = tempdir();
    let (one, two) = (dir.path().join("e1"), dir.path().join("e2"));
    write_series(&spec(), &one).unwrap();
    write_series(
        &PhantomSpec {
            seed: spec().seed + 1,
            ..spec()
        },
        &two,
    )
    .unwrap();
    let files = |dir: &Path| -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    };
    let first = dicom_object::open_file(&files(&one)[0]).unwrap();
    let uid = |tag| {
        first
            .element(tag)
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches(['\0', ' '])
            .to_string()
    };
    let same = [
        tags::STUDY_INSTANCE_UID,
        tags::SERIES_INSTANCE_UID,
        tags::FRAME_OF_REFERENCE_UID,
    ]
    .map(|t| (t, uid(t)));
    for (dir, echo) in [(&one, "1"), (&two, "2")] {
        for path in files(dir) {
            let mut obj = dicom_object::open_file(&path).unwrap();
            for (tag, value) in &same {
                obj.put(DataElement::new(
                    *tag,
                    VR::UI,
                    PrimitiveValue::from(value.clone()),
                ));
            }
            obj.put(DataElement::new(
                tags::ECHO_NUMBERS,
                VR::IS,
                PrimitiveValue::from(echo),
            ));
            obj.write_to_file(&path).unwrap();
        }
    }
    let patients = imaging::group(&imaging::scan(&[dir.path().to_path_buf()]).instances);
    let series = &patients[0].studies[0].series;
    assert_eq!(series.len(), 1);
    assert_eq!(series[0].stacks.len(), 2);

    let mut h = harness_on(dir.path(), Settings::default(), egui::vec2(1400.0, 800.0));
    let shown = h.state().cell_stack(0).unwrap().to_string();
    let (read_on, other) = if series[0].stacks[0].id == shown {
        ("echo 1", "echo 2")
    } else {
        ("echo 2", "echo 1")
    };
    h.get_by_label("1x2").click();
    h.step();
    let from = h
        .get_by_label_contains(&format!("40 images, 128x128 — {other}"))
        .rect()
        .center();
    let to = h.state().cell_rect(1).unwrap().center();
    drag(&mut h, from, to, 5);
    step_until(&mut h, 60, "the other volume did not load", |app| {
        app.loaded() && app.cell_stack(1).is_some_and(|id| id != shown)
    });
    h.state_mut().set_active(0);
    h.get_by_label("Probe").click();
    h.step();
    let z = h.state().viewports()[0].position_mm();
    click_patient(&mut h, DVec3::new(0.0, -60.0, z));
    let probe = h.state().measurements().last().unwrap().clone();
    let on_other = h.state().measurement_label(&probe, 1).unwrap();
    assert!(
        on_other.ends_with(&format!(", {read_on}")),
        "{on_other}: the volume it was read on"
    );
    h.state_mut().set_active(1);
    h.step();
    assert!(
        h.query_by_label_contains(&on_other.replace('\n', "; "))
            .is_some(),
        "the measurement list labels it as the viewport does"
    );
}

/// Two series of one study and frame of reference (2.5 mm and 5 mm slices) side by side: the
/// second, dragged from the browser onto the right-hand viewport of a 1x2 layout, opens there;
/// scrolling one moves the other to the
/// same patient position (its nearest slice, not the same index), each keeps its own window,
/// and unlinking stops it.
#[test]
fn a_second_series_opens_beside_the_first_and_scrolls_with_it_by_position() {
    let dir = tempdir();
    let thin = spec();
    let thick = PhantomSpec {
        slices: 20,
        spacing_mm: 5.0,
        ..spec()
    };
    write_series(&thin, &dir.path().join("thin")).unwrap();
    write_series(&thick, &dir.path().join("thick")).unwrap();
    let patients = imaging::group(&imaging::scan(&[dir.path().to_path_buf()]).instances);
    let stacks: Vec<imaging::Stack> = patients.iter().flat_map(|p| p.stacks().cloned()).collect();
    assert_eq!(stacks.len(), 2);
    let by_slices = |n: usize| {
        stacks
            .iter()
            .find(|s| s.slices.len() == n)
            .unwrap_or_else(|| {
                panic!(
                    "{:?}",
                    stacks
                        .iter()
                        .map(|s| (s.slices.len(), s.geometry.dims))
                        .collect::<Vec<_>>()
                )
            })
            .clone()
    };
    let (thin_stack, thick_stack) = (by_slices(40), by_slices(20));
    assert_eq!(
        thin_stack.geometry.frame_of_reference_uid,
        thick_stack.geometry.frame_of_reference_uid
    );

    let mut h = harness_on(dir.path(), Settings::default(), egui::vec2(1400.0, 800.0));
    assert_eq!(h.state().cell_stack(0), Some(thin_stack.id.as_str()));
    h.get_by_label("1x2").click();
    h.step();
    // Dragged from the study browser onto the right-hand viewport.
    let from = h.get_by_label_contains("20 images").rect().center();
    let to = h.state().cell_rect(1).unwrap().center();
    drag(&mut h, from, to, 5);
    step_until(&mut h, 60, "the second series did not load", |app| {
        app.loaded() && app.cell_stack(1).is_some_and(|id| id == thick_stack.id)
    });
    assert_eq!(h.state().cell_stack(0), Some(thin_stack.id.as_str()));
    assert_eq!(h.state().cell_stack(1), Some(thick_stack.id.as_str()));
    // Another grid keeps each viewport's series where it still has a place.
    h.get_by_label("2x2").click();
    h.step();
    let stacks = |h: &Harness<'_, OverreadApp>| -> Vec<String> {
        (0..h.state().viewports().len())
            .map(|i| h.state().cell_stack(i).unwrap().to_string())
            .collect()
    };
    assert_eq!(
        stacks(&h)[..2],
        [thin_stack.id.clone(), thick_stack.id.clone()]
    );
    h.get_by_label("1x2").click();
    h.step();
    assert_eq!(stacks(&h), [thin_stack.id.clone(), thick_stack.id.clone()]);

    let thick_z: Vec<f64> = thick_stack
        .geometry
        .slice_positions_mm
        .iter()
        .map(|p| p[2])
        .collect();
    let positions = |h: &Harness<'_, OverreadApp>| {
        let v = h.state().viewports();
        (v[0].position_mm(), v[1].position_mm())
    };
    h.state_mut().set_active(0);
    for _ in 0..7 {
        press(&mut h, egui::Key::ArrowDown);
    }
    let (p0, p1) = positions(&h);
    let nearest = thick_z
        .iter()
        .copied()
        .min_by(|a, b| (a - p0).abs().total_cmp(&(b - p0).abs()))
        .unwrap();
    assert!(
        (p1 - nearest).abs() < 1e-6,
        "{p0} -> {p1}, nearest thick slice {nearest}"
    );
    assert!((p1 - p0).abs() <= 2.5 + 1e-6);
    // By position, not by index: the two slice numbers differ.
    let slice_of = |h: &Harness<'_, OverreadApp>, i: usize| {
        let info = h.state().cell_volume_info(i).unwrap();
        h.state().viewports()[i].overlay(info).slice.unwrap().0
    };
    assert_ne!(slice_of(&h, 0), slice_of(&h, 1));

    // Each series keeps its own window.
    let thick_window = h.state().viewports()[1].display.clone();
    press(&mut h, egui::Key::Num5);
    assert_eq!(h.state().viewports()[1].display, thick_window);
    assert_ne!(h.state().viewports()[0].display, thick_window);

    // A measurement on the first series is quoted with that series, whichever view is active.
    h.get_by_label("Length").click();
    h.step();
    click_patient(&mut h, DVec3::new(-40.0, 0.0, p0));
    click_patient(&mut h, DVec3::new(40.0, 0.0, p0));
    let m = h.state().measurements()[0].clone();
    h.state_mut().set_active(1);
    let thin_series = patients[0].studies[0]
        .series
        .iter()
        .find(|se| se.stacks.iter().any(|k| k.id == thin_stack.id))
        .map(|se| se.uid.clone());
    assert_eq!(
        h.state().measurement_source(&m).series_instance_uid,
        thin_series
    );
    // A probe on the first series, drawn over the second too (one frame of reference): its
    // value is the first's, and the second's viewport says whose (the same length needs no
    // such word: a distance is the same on both).
    h.state_mut().set_active(0);
    h.get_by_label("Probe").click();
    h.step();
    click_patient(&mut h, DVec3::new(0.0, -60.0, p0));
    let probe = h.state().measurements().last().unwrap().clone();
    assert!(matches!(probe.shape, Shape::Probe { .. }));
    let on_first = h.state().measurement_label(&probe, 0).unwrap();
    let on_second = h.state().measurement_label(&probe, 1).unwrap();
    assert!(!on_first.contains("values of"), "{on_first}");
    assert!(on_second.starts_with(&on_first), "{on_first} / {on_second}");
    assert!(on_second.contains("\nvalues of series"), "{on_second}");
    let length_on_second = h.state().measurement_label(&m, 1).unwrap();
    assert!(
        !length_on_second.contains("values of"),
        "{length_on_second}"
    );
    // The measurement list says it too, as the active viewport does.
    assert!(h.query_by_label_contains("; values of series").is_none());
    h.state_mut().set_active(1);
    h.step();
    assert!(h.query_by_label_contains("; values of series").is_some());
    h.state_mut().set_active(0);
    h.step();
    h.get_by_label("W/L").click();
    h.step();

    // Unlinked, the second series stays where it is.
    h.get_by_label("Link").click();
    h.step();
    assert!(!h.state().link_series);
    for _ in 0..6 {
        press(&mut h, egui::Key::ArrowDown);
    }
    let (q0, q1) = positions(&h);
    assert!((q0 - p0).abs() > 10.0);
    assert_eq!(q1, p1);

    // A double-click puts a series into the active viewport: both now show the thin one.
    h.state_mut().set_active(1);
    // Two clicks 0.1 s apart, ten seconds after the test's earlier clicks (the harness's
    // clock, a sixtieth of a second a step, is set forward: it would otherwise count these
    // with those as one triple click).
    let row = h.get_by_label_contains("40 images").rect().center();
    h.event(egui::Event::PointerMoved(row));
    h.step();
    let now = h.ctx.input(|i| i.time);
    for t in [now + 10.0, now + 10.1] {
        h.input_mut().time = Some(t);
        for pressed in [true, false] {
            h.event(button_event(row, egui::PointerButton::Primary, pressed));
        }
        h.step();
    }
    step_until(
        &mut h,
        60,
        "the double-clicked series did not open",
        |app| app.loaded() && app.cell_stack(1).is_some_and(|id| id == thin_stack.id),
    );
    assert_eq!(h.state().cell_stack(0), Some(thin_stack.id.as_str()));

    // A study opened as a whole (a scan, a case) fills every viewport.
    let ctx = h.ctx.clone();
    h.state_mut().open_stack(&thick_stack.id, &ctx);
    step_until(&mut h, 60, "the study did not open", |app| app.loaded());
    assert_eq!(stacks(&h), [thick_stack.id.clone(), thick_stack.id.clone()]);
}

/// The real GE head CT with an 18.5 degree gantry tilt and slices 1.08 to 6.99 mm apart opens
/// on its own slices, not on an axial reformat between them: the plane is the images' own
/// (row x column of Image Orientation, read here from the files), and the keys step through
/// the slices one by one at their own positions (Image Position along that normal, read here
/// too), showing each image's number, across the wide gaps as well; the window shows the
/// reference renderer's image of that plane.
#[test]
fn a_tilted_unevenly_spaced_ct_opens_and_scrolls_on_its_own_slices() {
    let Some(root) = crate::support::shared_dicom() else {
        return;
    };
    let dir = root.join("ct/ge_hispeed_tilt_nonuniform/dicom");
    let numbers = |obj: &dicom_object::DefaultDicomObject, tag| -> Vec<f64> {
        obj.element(tag)
            .unwrap()
            .to_str()
            .unwrap()
            .split('\\')
            .map(|v| v.trim().parse().unwrap())
            .collect()
    };
    let mut normal = DVec3::ZERO;
    let mut positions = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let obj = dicom_object::open_file(entry.unwrap().path()).unwrap();
        let iop = numbers(&obj, dicom_dictionary_std::tags::IMAGE_ORIENTATION_PATIENT);
        let ipp = numbers(&obj, dicom_dictionary_std::tags::IMAGE_POSITION_PATIENT);
        normal = DVec3::new(iop[0], iop[1], iop[2])
            .cross(DVec3::new(iop[3], iop[4], iop[5]))
            .normalize();
        positions.push(DVec3::new(ipp[0], ipp[1], ipp[2]));
    }
    assert_eq!(positions.len(), 28);
    // 18.5 degrees off axial.
    assert!((normal.z.abs().acos().to_degrees() - 18.5).abs() < 0.1);

    let mut h = harness_on(&dir, Settings::default(), egui::vec2(1200.0, 800.0));
    let n = h.state().viewport().unwrap().normal();
    assert!(
        n.dot(normal).abs() > 1.0 - 1e-9,
        "plane {n} vs images {normal}"
    );
    let mut along: Vec<f64> = positions.iter().map(|p| p.dot(n)).collect();
    along.sort_by(f64::total_cmp);
    let gaps: Vec<f64> = along.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().copied().fold(f64::MAX, f64::min) < 1.2);
    assert!(gaps.iter().copied().fold(0.0, f64::max) > 6.5);
    let position = |h: &Harness<'_, OverreadApp>| h.state().viewport().unwrap().position_mm();
    let (k, count) = slice(&h);
    assert_eq!(count, 28);
    assert!((position(&h) - along[k - 1]).abs() < 1e-3);
    assert_window_shows_reference(&mut h, "tilted CT");
    press(&mut h, egui::Key::Home);
    for (i, expected) in along.iter().enumerate() {
        assert_eq!(slice(&h), (i + 1, 28));
        assert!(
            (position(&h) - expected).abs() < 1e-3,
            "image {}: at {} mm, the slice is at {expected} mm",
            i + 1,
            position(&h)
        );
        press(&mut h, egui::Key::ArrowDown);
    }
    assert_eq!(slice(&h), (28, 28));
    // A (true axial) is a reformat across the tilted slices; O goes back to the images' own
    // plane, on a slice.
    press(&mut h, egui::Key::A);
    assert_eq!(h.state().viewport().unwrap().plane, Plane::Axial);
    let info = h.state().volume_info().unwrap();
    assert_eq!(h.state().viewport().unwrap().overlay(info).slice, None);
    press(&mut h, egui::Key::O);
    assert!(h.state().viewport().unwrap().normal().dot(normal).abs() > 1.0 - 1e-9);
    assert_eq!(slice(&h).1, 28);
}

/// A measurement's points come from one plane of one series, and never fall together: a
/// double click (the second point within a pixel of the first) is taken back and the length
/// waits for its second point; a point clicked after scrolling starts the measurement again
/// on the new plane; an angle's vertex dragged onto the end of a side stops short of it (an
/// angle with a zero side has no value).
#[test]
fn measurement_points_stay_on_one_plane_and_never_fall_together() {
    let dir = tempdir();
    let mut h = open_app(dir.path());
    show_axial_at_zero(&mut h);
    let pixel_mm = h.state().current_view().unwrap().pixel_mm;
    let p = |x: f64, y: f64, z: f64| DVec3::new(x, y, z);
    let last = |h: &Harness<'_, OverreadApp>| h.state().measurements().last().unwrap().clone();

    h.get_by_label("Length").click();
    h.step();
    click_patient(&mut h, p(-60.0, 0.0, 0.0));
    click_patient(&mut h, p(-60.0, 0.0, 0.0));
    assert!(h.state().measurements().is_empty());
    click_patient(&mut h, p(0.0, 0.0, 0.0));
    assert_eq!(h.state().measurements().len(), 1);
    let Some(Value::LengthMm(mm)) = h.state().measurement_value(&last(&h)) else {
        panic!("not a length")
    };
    assert!((mm - 60.0).abs() <= 2.0 * pixel_mm, "{mm}");

    // First point, then the next slice: the second click starts a new length there.
    click_patient(&mut h, p(-60.0, 20.0, 0.0));
    press(&mut h, egui::Key::ArrowDown);
    let z = h.state().viewport().unwrap().position_mm();
    assert!(z > 0.0);
    click_patient(&mut h, p(0.0, 20.0, z));
    assert_eq!(h.state().measurements().len(), 1);
    click_patient(&mut h, p(0.0, 50.0, z));
    assert_eq!(h.state().measurements().len(), 2);
    let Shape::Length { a, b } = last(&h).shape else {
        panic!("not a length")
    };
    assert!(
        (a[2] - z).abs() < 1e-6 && (b[2] - z).abs() < 1e-6,
        "{a:?} {b:?}"
    );

    // An angle (away from the lengths' handles) whose first point is double-clicked: the
    // second click is taken back and the angle is finished by its vertex and other end. Then
    // its vertex is dragged onto its first point.
    show_axial_at_zero(&mut h);
    h.get_by_label("Angle").click();
    h.step();
    let (a, vertex, b) = (p(-20.0, 40.0, 0.0), p(40.0, 40.0, 0.0), p(40.0, -20.0, 0.0));
    for q in [a, a, vertex, b] {
        click_patient(&mut h, q);
    }
    assert_eq!(h.state().measurements().len(), 3);
    let Some(Value::AngleDeg(deg)) = h.state().measurement_value(&last(&h)) else {
        panic!("not an angle")
    };
    assert!((deg - 90.0).abs() < 1.0, "{deg}");
    h.get_by_label("W/L").click();
    h.step();
    let path: Vec<egui::Pos2> = (0..=10)
        .map(|t| screen_of(&h, 0, vertex.lerp(a, f64::from(t) / 10.0)))
        .collect();
    drag_along(&mut h, &path);
    let angle = last(&h);
    let Shape::Angle {
        a: a2, vertex: v2, ..
    } = angle.shape
    else {
        panic!("not an angle")
    };
    let side = DVec3::from(a2).distance(DVec3::from(v2));
    assert!(side >= pixel_mm && side < 15.0, "the side is {side} mm");
    let Some(Value::AngleDeg(deg)) = h.state().measurement_value(&angle) else {
        panic!("not an angle")
    };
    assert!(deg.is_finite(), "{deg}");
}

/// An MR series without a window in its files is shown in its data's full range once loaded
/// (the range worked out on the loading thread), and so is the same series opened again in a
/// second viewport (it used to get the provisional 12-bit window there, for good). In a 2x2
/// layout, the viewport being worked in stays the active one when the layout becomes 1x2.
#[test]
fn a_series_without_a_window_shows_its_range_in_every_viewport() {
    let dir = tempdir();
    write_series(&spec(), dir.path()).unwrap();
    edit_each_file(dir.path(), |obj| {
        obj.remove_element(dicom_dictionary_std::tags::WINDOW_CENTER);
        obj.remove_element(dicom_dictionary_std::tags::WINDOW_WIDTH);
        obj.put(dicom_object::mem::InMemElement::new(
            dicom_dictionary_std::tags::MODALITY,
            dicom_core::VR::CS,
            dicom_core::PrimitiveValue::from("MR"),
        ));
    });
    let mut h = harness_on(dir.path(), Settings::default(), egui::vec2(1200.0, 800.0));
    let app = h.state();
    let range = imaging::stats::voxel_range(app.loaded_volume().unwrap());
    let expected = overread::render::Voi::spanning(range.min_modality, range.max_modality);
    assert_eq!(app.viewport().unwrap().display.voi, expected);
    // Another window, then the file's window key: the one it opened with, as the files give
    // none.
    press(&mut h, egui::Key::Num1);
    assert_ne!(h.state().viewport().unwrap().display.voi, expected);
    press(&mut h, egui::Key::Num0);
    assert_eq!(h.state().viewport().unwrap().display.voi, expected);

    let id = h.state().cell_stack(0).unwrap().to_string();
    h.state_mut().set_layout(Layout::OneByTwo);
    h.state_mut().set_active(1);
    let ctx = h.ctx.clone();
    h.state_mut().open_stack_here(&id, &ctx);
    h.step();
    for v in h.state().viewports() {
        assert_eq!(v.display.voi, expected);
    }

    h.state_mut().set_layout(Layout::TwoByTwo);
    h.state_mut().set_active(3);
    h.state_mut().set_layout(Layout::OneByTwo);
    assert_eq!(h.state().active(), 1);
}

/// A CT whose files carry two windows (brain and lung, as `40\-600` and `400\1500`) opens
/// in the first; the file-window key gives the second, then the first again.
#[test]
fn the_files_windows_come_in_turn() {
    let dir = tempdir();
    write_series(&spec(), dir.path()).unwrap();
    edit_each_file(dir.path(), |obj| {
        for (tag, value) in [
            (dicom_dictionary_std::tags::WINDOW_CENTER, "40\\-600"),
            (dicom_dictionary_std::tags::WINDOW_WIDTH, "400\\1500"),
        ] {
            obj.put(dicom_object::mem::InMemElement::new(
                tag,
                dicom_core::VR::DS,
                dicom_core::PrimitiveValue::from(value),
            ));
        }
    });
    let mut h = harness_on(dir.path(), Settings::default(), egui::vec2(1200.0, 800.0));
    let window = |h: &Harness<'_, OverreadApp>| {
        let app = h.state();
        app.viewport()
            .unwrap()
            .overlay(app.volume_info().unwrap())
            .window
    };
    assert_eq!(window(&h), Some((400.0, 40.0)), "opens in the first");
    press(&mut h, egui::Key::Num0);
    assert_eq!(window(&h), Some((1500.0, -600.0)), "then the second");
    press(&mut h, egui::Key::Num0);
    assert_eq!(window(&h), Some((400.0, 40.0)), "then the first again");
    press(&mut h, egui::Key::Num2);
    press(&mut h, egui::Key::Num0);
    assert_eq!(window(&h), Some((400.0, 40.0)), "from a preset: the first");
}

/// A folder without images dropped on the window while a study is read: the study, its
/// browser and its patient stay, and the status says why nothing changed.
#[test]
fn a_dropped_folder_without_images_leaves_the_study_open() {
    let dir = tempdir();
    let mut h = open_app(dir.path());
    let empty = tempdir();
    std::fs::write(empty.path().join("notes.txt"), "not DICOM").unwrap();
    scan_until(&mut h, vec![empty.path().to_path_buf()], |app| {
        app.status().contains("no images found")
    });
    h.step();
    assert!(h.state().loaded());
    assert!(h.query_by_label_contains("40 images").is_some());
    assert!(h.query_by_label_contains("PHANTOM").is_some());
}

/// Another study dropped on the window replaces the one read, and leaves nothing of it: the
/// measurement made on the first (named by a stack id the next scan numbers again) is not
/// drawn, valued or offered on the second's images.
#[test]
fn another_study_dropped_leaves_no_measurement_of_the_last() {
    let dir = tempdir();
    let mut h = open_app(dir.path());
    measure_nodule_to_spine(&mut h);
    assert_eq!(h.state().measurements().len(), 1);
    let first = h.state().cell_stack(0).unwrap().to_string();

    let other = tempdir();
    write_series(&PhantomSpec { seed: 2, ..spec() }, other.path()).unwrap();
    scan_and_wait(&mut h, vec![other.path().to_path_buf()]);
    h.step();
    assert_eq!(
        h.state().cell_stack(0),
        Some(first.as_str()),
        "the same id, again"
    );
    assert!(h.state().measurements().is_empty());
    assert!(h.state().visible_measurements().is_empty());
}

/// A length is geometry: its value stands when the series it was drawn on is closed (another
/// shown in its place), not "(loading)" for good.
#[test]
fn a_length_keeps_its_value_when_its_series_is_closed() {
    let dir = tempdir();
    let a = dir.path().join("a");
    write_series(&spec(), &a).unwrap();
    write_series(&PhantomSpec { seed: 2, ..spec() }, &dir.path().join("b")).unwrap();
    let mut h = harness_on(dir.path(), Settings::default(), egui::vec2(1200.0, 800.0));
    let (p, q) = measure_nodule_to_spine(&mut h);
    let m = h.state().measurements()[0].clone();
    let drawn_on = m.stack_id.clone().unwrap();
    let other = h
        .state()
        .patients()
        .iter()
        .flat_map(|p| p.stacks())
        .map(|st| st.id.clone())
        .find(|id| *id != drawn_on)
        .unwrap();
    let ctx = h.ctx.clone();
    h.state_mut().open_stack(&other, &ctx);
    h.step();
    assert_ne!(h.state().cell_stack(0), Some(drawn_on.as_str()));
    let Some(Value::LengthMm(mm)) = h.state().measurement_value(&m) else {
        panic!("no value for the length")
    };
    // The points snap to pixel centres: the length is within a pixel of the one asked for.
    assert!((mm - p.distance(q)).abs() < 3.0, "{mm} mm");
}

/// The same study scanned again with another beside it (its stack numbered anew): what was
/// measured on it goes with its stack, by the frames the stack holds.
#[test]
fn a_study_scanned_again_keeps_its_measurements() {
    let dir = tempdir();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    write_series(&spec(), &a).unwrap();
    // A second study whose stack comes first in the scan of both, so the first's is
    // numbered anew ("2", it was "1").
    let a_uid = imaging::scan(std::slice::from_ref(&a)).instances[0]
        .sop_instance_uid
        .clone();
    let renumbered = (2..40).any(|seed| {
        let _ = std::fs::remove_dir_all(&b);
        write_series(&PhantomSpec { seed, ..spec() }, &b).unwrap();
        let both = imaging::group(&imaging::scan(&[b.clone(), a.clone()]).instances);
        both.iter()
            .flat_map(|p| p.stacks())
            .find(|st| st.slices.iter().any(|s| s.sop_instance_uid == a_uid))
            .is_some_and(|st| st.id == "2")
    });
    assert!(renumbered, "no seed puts the second study first");
    let mut h = harness_on(&a, Settings::default(), egui::vec2(1200.0, 800.0));
    measure_nodule_to_spine(&mut h);
    let before = h.state().measurements()[0].clone();
    let sop_of_a = h.state().patients()[0].stacks().next().unwrap().slices[0]
        .sop_instance_uid
        .clone();

    scan_and_wait(&mut h, vec![b.clone(), a.clone()]);
    let a_now = h
        .state()
        .patients()
        .iter()
        .flat_map(|p| p.stacks())
        .find(|st| st.slices.iter().any(|s| s.sop_instance_uid == sop_of_a))
        .map(|st| st.id.clone())
        .unwrap();
    let after = h.state().measurements();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].shape, before.shape);
    assert_eq!(after[0].stack_id.as_deref(), Some(a_now.as_str()));
    assert_ne!(after[0].stack_id, before.stack_id, "numbered anew");
}

/// A series with one slice that cannot be decoded: the rest loads and shows, the load's
/// progress ends with the load (not "loading 39/40" for good), and the status counts the
/// failed slice.
#[test]
fn a_series_with_a_broken_slice_finishes_loading() {
    let dir = tempdir();
    write_series(
        &PhantomSpec {
            syntax: imaging::synth::SynthSyntax::Rle,
            ..spec()
        },
        dir.path(),
    )
    .unwrap();
    // Slice 5's RLE segments overwritten with bytes that are no RLE stream: the header still
    // reads, the pixels do not decode.
    let path = dir.path().join("IM00005.dcm");
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    for b in &mut bytes[n - 2000..n - 8] {
        *b = 0x80;
    }
    std::fs::write(&path, bytes).unwrap();
    let h = harness_on(dir.path(), Settings::default(), egui::vec2(1200.0, 800.0));
    let app = h.state();
    assert_eq!(app.loaded_volume().unwrap().failed_slices.len(), 1);
    assert_eq!(app.load_progress(), None);
    assert!(
        app.status().contains("1 of 40 slices failed"),
        "{}",
        app.status()
    );
}
