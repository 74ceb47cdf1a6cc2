//! The report's plots, each written as PNG and SVG with plotters.
//!
//! Text needs a TrueType font: the first one found under [`FONT_DIRS`] is registered once. With
//! none, plots are drawn without text and the Markdown caption names the axes.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::EvalError;
use super::report::{CandidateReport, Report};

/// Folders searched for a `.ttf` font, in order.
pub const FONT_DIRS: [&str; 2] = ["/usr/share/fonts/truetype/dejavu", "/usr/share/fonts"];
const SIZE: (u32, u32) = (800, 600);

/// A plot written into the report folder.
pub struct Plotted {
    pub title: String,
    pub caption: String,
    /// File names relative to the report folder.
    pub png: String,
    pub svg: String,
}

fn find_font(dir: &Path, depth: usize) -> Option<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    // Prefer the plain sans face where there is one.
    if let Some(p) = entries
        .iter()
        .find(|p| p.file_name().is_some_and(|n| n == "DejaVuSans.ttf"))
    {
        return Some(p.clone());
    }
    if let Some(p) = entries
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "ttf"))
    {
        return Some(p.clone());
    }
    if depth == 0 {
        return None;
    }
    entries
        .iter()
        .filter(|p| p.is_dir())
        .find_map(|p| find_font(p, depth - 1))
}

/// Whether text can be drawn: a font was found and registered (done once per process).
fn text_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let Some(path) = FONT_DIRS.iter().find_map(|d| find_font(Path::new(d), 3)) else {
            return false;
        };
        let Ok(bytes) = std::fs::read(&path) else {
            return false;
        };
        // Registered fonts live as long as the process; this runs once.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
    })
}

struct Scatter<'a> {
    title: &'a str,
    x_label: &'a str,
    y_label: &'a str,
    points: Vec<(f64, f64)>,
}

/// A named, coloured line through its points.
type Series<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);

struct Lines<'a> {
    title: &'a str,
    x_label: &'a str,
    y_label: &'a str,
    series: Vec<Series<'a>>,
}

/// A named, coloured line through means, with a bar from `low` to `high` at each point.
type ErrorSeries<'a> = (&'a str, RGBColor, Vec<ErrorPoint>);

#[derive(Debug, Clone, Copy, PartialEq)]
struct ErrorPoint {
    x: f64,
    mean: f64,
    low: f64,
    high: f64,
}

/// Lines with error bars on a y range fitted to the data (AUCs sit far from 0).
struct ErrorLines<'a> {
    title: &'a str,
    x_label: &'a str,
    y_label: &'a str,
    series: Vec<ErrorSeries<'a>>,
}

enum Figure<'a> {
    Scatter(Scatter<'a>),
    Lines(Lines<'a>),
    Errors(ErrorLines<'a>),
}

/// The y range of error lines: their lowest and highest bar, padded by 5%.
fn error_range(series: &[ErrorSeries]) -> (f64, f64) {
    let points = series.iter().flat_map(|s| s.2.iter());
    let (lo, hi) = points.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
        (a.min(p.low), b.max(p.high))
    });
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(0.005);
    (lo - pad, hi + pad)
}

fn draw<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    figure: &Figure,
    text: bool,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let e = |err: DrawingAreaErrorKind<DB::ErrorType>| err.to_string();
    area.fill(&WHITE).map_err(e)?;
    let (title, x_label, y_label, x_max, (y_min, y_max)) = match figure {
        Figure::Scatter(s) => {
            let hi = s.points.iter().fold(0.0f64, |m, p| m.max(p.0).max(p.1));
            let hi = if hi > 0.0 { hi * 1.05 } else { 1.0 };
            (s.title, s.x_label, s.y_label, hi, (0.0, hi))
        }
        Figure::Errors(l) => {
            let xm = l
                .series
                .iter()
                .flat_map(|s| s.2.iter())
                .fold(0.0f64, |m, p| m.max(p.x));
            let xm = if xm > 0.0 { xm * 1.05 } else { 1.0 };
            (l.title, l.x_label, l.y_label, xm, error_range(&l.series))
        }
        Figure::Lines(l) => {
            let pts = l.series.iter().flat_map(|s| s.2.iter());
            let (xm, ym) = pts.fold((1.0f64, 0.0f64), |(a, b), p| (a.max(p.0), b.max(p.1)));
            (
                l.title,
                l.x_label,
                l.y_label,
                xm,
                (0.0, if ym > 0.0 { ym * 1.05 } else { 1.0 }),
            )
        }
    };
    let mut builder = ChartBuilder::on(area);
    builder.margin(20);
    if text {
        builder
            .caption(title, ("sans-serif", 22))
            .x_label_area_size(45)
            .y_label_area_size(60);
    }
    let mut chart = builder
        .build_cartesian_2d(0.0..x_max, y_min..y_max)
        .map_err(e)?;
    let mut mesh = chart.configure_mesh();
    if text {
        mesh.x_desc(x_label).y_desc(y_label);
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw().map_err(e)?;
    match figure {
        Figure::Scatter(s) => {
            chart
                .draw_series(LineSeries::new(
                    [(0.0, 0.0), (x_max, x_max)],
                    BLACK.stroke_width(1),
                ))
                .map_err(e)?;
            chart
                .draw_series(
                    s.points
                        .iter()
                        .map(|&p| Circle::new(p, 3, BLUE.mix(0.6).filled())),
                )
                .map_err(e)?;
        }
        Figure::Lines(l) => {
            for (name, color, points) in &l.series {
                let color = *color;
                let series = chart
                    .draw_series(LineSeries::new(
                        points.iter().copied(),
                        color.stroke_width(2),
                    ))
                    .map_err(e)?;
                if text {
                    series.label(*name).legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2))
                    });
                }
                chart
                    .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                    .map_err(e)?;
            }
            if text {
                chart
                    .configure_series_labels()
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK)
                    .draw()
                    .map_err(e)?;
            }
        }
        Figure::Errors(l) => {
            // Bars of one x side by side, so that they do not hide each other.
            let shift = x_max * 0.006;
            for (k, (name, color, points)) in l.series.iter().enumerate() {
                let color = *color;
                let dx = (k as f64 - (l.series.len() as f64 - 1.0) / 2.0) * shift;
                let line = points.iter().map(|p| (p.x + dx, p.mean));
                let series = chart
                    .draw_series(LineSeries::new(line, color.stroke_width(2)))
                    .map_err(e)?;
                if text {
                    series.label(*name).legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2))
                    });
                }
                chart
                    .draw_series(points.iter().map(|p| {
                        PathElement::new(
                            [(p.x + dx, p.low), (p.x + dx, p.high)],
                            color.stroke_width(2),
                        )
                    }))
                    .map_err(e)?;
                chart
                    .draw_series(
                        points
                            .iter()
                            .map(|p| Circle::new((p.x + dx, p.mean), 3, color.filled())),
                    )
                    .map_err(e)?;
            }
            if text {
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::LowerRight)
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK)
                    .draw()
                    .map_err(e)?;
            }
        }
    }
    area.present().map_err(e)
}

fn write(
    dir: &Path,
    stem: &str,
    figure: &Figure,
    text: bool,
) -> Result<(String, String), EvalError> {
    let (png, svg) = (format!("{stem}.png"), format!("{stem}.svg"));
    let failed = |path: &str| {
        let path = dir.join(path);
        move |why| EvalError::Plot { path, why }
    };
    let png_path = dir.join(&png);
    draw(
        &BitMapBackend::new(&png_path, SIZE).into_drawing_area(),
        figure,
        text,
    )
    .map_err(failed(&png))?;
    let svg_path = dir.join(&svg);
    draw(
        &SVGBackend::new(&svg_path, SIZE).into_drawing_area(),
        figure,
        text,
    )
    .map_err(failed(&svg))?;
    Ok((png, svg))
}

fn shares(histogram: &[u64], cap: usize) -> Vec<(f64, f64)> {
    let n: u64 = histogram.iter().sum();
    if n == 0 {
        return Vec::new();
    }
    (0..=cap)
        .map(|k| {
            (
                k as f64,
                histogram.get(k).copied().unwrap_or(0) as f64 / n as f64,
            )
        })
        .collect()
}

fn auc_points(c: &CandidateReport) -> Vec<(f64, f64)> {
    c.prediction
        .per_code
        .iter()
        .filter_map(|p| Some((p.real_auc.get()?, p.synthetic_auc.get()?)))
        .collect()
}

/// Mean AUC and mean ± sd bars of each augmentation point with a defined mean.
fn utility_points(c: &CandidateReport) -> Vec<ErrorPoint> {
    c.utility
        .points
        .iter()
        .filter_map(|p| {
            let mean = p.auc.mean.get()?;
            let sd = p.auc.sd.get().unwrap_or(0.0);
            Some(ErrorPoint {
                x: p.added_rows as f64,
                mean,
                low: mean - sd,
                high: mean + sd,
            })
        })
        .collect()
}

/// Draws every plot of `report` into `dir`.
pub fn draw_all(report: &Report, dir: &Path) -> Result<Vec<Plotted>, EvalError> {
    draw_all_with(report, dir, text_available())
}

fn draw_all_with(report: &Report, dir: &Path, text: bool) -> Result<Vec<Plotted>, EvalError> {
    let m = &report.model;
    let d = &m.dimension_wise;
    let pairs = |a: &[f64], b: &[f64]| a.iter().copied().zip(b.iter().copied()).collect();
    let cap = m
        .record_shape
        .real_histogram
        .len()
        .max(m.record_shape.synthetic_histogram.len());
    let cap = cap.saturating_sub(1).min(30);
    let figures = [
        (
            "dimension_wise",
            "Dimension-wise probability",
            "One point per code: x real training mean, y synthetic mean; line: y = x.",
            Figure::Scatter(Scatter {
                title: "Dimension-wise probability",
                x_label: "real",
                y_label: "synthetic",
                points: pairs(&d.real_means, &d.synthetic_means),
            }),
        ),
        (
            "record_shape",
            "Codes per record",
            "x: number of codes in a record; y: share of records. Blue real, red model, \
             green independent draws.",
            Figure::Lines(Lines {
                title: "Codes per record",
                x_label: "codes in the record",
                y_label: "share of records",
                series: vec![
                    ("real", BLUE, shares(&m.record_shape.real_histogram, cap)),
                    (
                        "model",
                        RED,
                        shares(&m.record_shape.synthetic_histogram, cap),
                    ),
                    (
                        "independent",
                        GREEN,
                        shares(&report.independent.record_shape.synthetic_histogram, cap),
                    ),
                ],
            }),
        ),
        (
            "co_occurrence",
            "Co-occurrence",
            "One point per pair of frequent codes: x real P(both), y synthetic P(both); \
             line: y = x.",
            Figure::Scatter(Scatter {
                title: "Joint probability of code pairs",
                x_label: "real",
                y_label: "synthetic",
                points: pairs(
                    &m.co_occurrence.real_joint,
                    &m.co_occurrence.synthetic_joint,
                ),
            }),
        ),
        (
            "prediction_auc",
            "Dimension-wise prediction",
            "One point per code: x AUC trained on real rows, y trained on synthetic rows, both \
             tested on held-out rows; line: y = x.",
            Figure::Scatter(Scatter {
                title: "Dimension-wise prediction AUC",
                x_label: "trained on real",
                y_label: "trained on synthetic",
                points: auc_points(m),
            }),
        ),
        (
            "utility_auc",
            "Utility by augmentation",
            "x: candidate rows added to the real training rows; y: AUC on held-out rows, mean \
             over the seeds, bars ± one standard deviation. Red model, green independent draws, \
             blue real sample.",
            Figure::Errors(ErrorLines {
                title: "Augmentation: AUC vs added rows",
                x_label: "candidate rows added",
                y_label: "held-out AUC",
                series: vec![
                    ("model", RED, utility_points(m)),
                    ("independent", GREEN, utility_points(&report.independent)),
                    ("real sample", BLUE, utility_points(&report.real_sample)),
                ],
            }),
        ),
    ];
    let mut out = Vec::new();
    for (stem, title, caption, figure) in figures {
        let (png, svg) = write(dir, stem, &figure, text)?;
        out.push(Plotted {
            title: title.to_string(),
            caption: caption.to_string(),
            png,
            svg,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_without_text_still_draw() {
        let dir = tempfile::tempdir().unwrap();
        let figure = Figure::Scatter(Scatter {
            title: "t",
            x_label: "x",
            y_label: "y",
            points: vec![],
        });
        let (png, svg) = write(dir.path(), "empty", &figure, false).unwrap();
        assert!(std::fs::metadata(dir.path().join(png)).unwrap().len() > 0);
        assert!(
            std::fs::read_to_string(dir.path().join(svg))
                .unwrap()
                .contains("<svg")
        );
    }

    #[test]
    fn error_lines_fit_their_bars_and_draw() {
        let at = |x, mean, sd| ErrorPoint {
            x,
            mean,
            low: mean - sd,
            high: mean + sd,
        };
        let series = vec![
            ("a", RED, vec![at(0.0, 0.70, 0.01), at(1000.0, 0.74, 0.02)]),
            ("b", BLUE, vec![at(0.0, 0.70, 0.01), at(1000.0, 0.66, 0.0)]),
        ];
        let (lo, hi) = error_range(&series);
        assert!(
            lo < 0.66 && lo > 0.65 && hi > 0.76 && hi < 0.77,
            "{lo} {hi}"
        );
        assert_eq!(error_range(&[]), (0.0, 1.0));
        let dir = tempfile::tempdir().unwrap();
        let figure = Figure::Errors(ErrorLines {
            title: "t",
            x_label: "x",
            y_label: "y",
            series,
        });
        for text in [false, text_available()] {
            let (png, _) = write(dir.path(), "errors", &figure, text).unwrap();
            assert!(std::fs::metadata(dir.path().join(png)).unwrap().len() > 0);
        }
    }
}
