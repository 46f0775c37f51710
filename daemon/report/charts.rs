//! The report's charts, as inline SVG (plotters' SVG backend: text is SVG
//! `<text>`, no font files, no script).

use plotters::prelude::*;

const W: u32 = 760;
/// Bar charts are wider: their categories are names (protocols, policies).
const W_BARS: u32 = 1000;
const H: u32 = 300;
const FONT: &str = "sans-serif";

pub const MFA: RGBColor = RGBColor(46, 125, 50);
pub const SINGLE_FACTOR: RGBColor = RGBColor(239, 108, 0);
pub const LEGACY: RGBColor = RGBColor(198, 40, 40);
pub const FAILED: RGBColor = RGBColor(120, 120, 120);
pub const BLUE: RGBColor = RGBColor(21, 101, 192);
/// The MFA strength classes, in the order of `classify::Strength::ALL`:
/// phishing-resistant green, push blue, otp teal, telephony orange, other
/// purple, previously satisfied light grey, unknown grey.
pub const STRENGTHS: [RGBColor; 7] =
    [MFA, BLUE, RGBColor(0, 131, 143), SINGLE_FACTOR, RGBColor(142, 36, 170), RGBColor(176, 190, 197), FAILED];

/// A series of bars: its name, colour and one value per category.
pub struct Bars<'a> {
    pub name: &'a str,
    pub color: RGBColor,
    pub values: Vec<f64>,
}

/// Wraps a chart's SVG in a figure the page (and the tests) can find.
fn figure(id: &str, title: &str, points: usize, svg: String) -> String {
    format!(
        "<figure class=\"chart\" id=\"chart-{id}\" data-chart=\"{id}\" data-points=\"{points}\">\n{svg}\n<figcaption>{}</figcaption></figure>\n",
        super::render::escape(title)
    )
}

fn draw<E: std::fmt::Debug>(result: Result<(), E>) -> String {
    match result {
        Ok(()) => String::new(),
        Err(e) => format!("<p class=\"error\">chart not drawn: {}</p>", super::render::escape(&format!("{e:?}"))),
    }
}

/// A line of ratios (0–1) over named points; `None` is a gap.
pub fn ratio_line(id: &str, title: &str, labels: &[String], values: &[Option<f64>]) -> String {
    let mut svg = String::new();
    let points = values.iter().flatten().count();
    let error = draw((|| -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE)?;
        let n = labels.len().max(1);
        let mut chart = ChartBuilder::on(&root)
            .margin(16)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..1.0)?;
        chart
            .configure_mesh()
            .x_labels(n)
            .x_label_formatter(&|x| label_at(labels, *x, W))
            .y_label_formatter(&|y| format!("{:.0}%", y * 100.0))
            .y_desc("MFA coverage")
            .light_line_style(WHITE)
            .label_style((FONT, 12))
            .draw()?;
        let line: Vec<(f64, f64)> = values.iter().enumerate().filter_map(|(i, v)| v.map(|v| (i as f64, v))).collect();
        chart.draw_series(LineSeries::new(line.clone(), BLUE.stroke_width(3)))?;
        chart.draw_series(line.iter().map(|&p| Circle::new(p, 4, BLUE.filled())))?;
        root.present()?;
        Ok(())
    })());
    figure(id, title, points, svg + &error)
}

/// Bars per category, stacked (`stacked`) or side by side.
pub fn bars(id: &str, title: &str, categories: &[String], series: &[Bars<'_>], stacked: bool) -> String {
    let mut svg = String::new();
    let points = series.iter().map(|s| s.values.iter().filter(|v| **v > 0.0).count()).sum();
    let error = draw((|| -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::with_string(&mut svg, (W_BARS, H + 30)).into_drawing_area();
        root.fill(&WHITE)?;
        let n = categories.len().max(1);
        let top = (0..n)
            .map(|i| {
                let at = series.iter().map(|s| s.values.get(i).copied().unwrap_or(0.0));
                if stacked { at.sum::<f64>() } else { at.fold(0.0, f64::max) }
            })
            .fold(0.0, f64::max)
            .max(1.0)
            // Headroom for the legend in the upper right, a line per series.
            * (1.15 + 0.08 * series.len() as f64);
        let mut chart = ChartBuilder::on(&root)
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..top)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n.min(31))
            .x_label_formatter(&|x| label_at(categories, *x, W_BARS))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .light_line_style(WHITE)
            .label_style((FONT, 11))
            .draw()?;
        let width = 0.8 / if stacked { 1.0 } else { series.len().max(1) as f64 };
        let mut base = vec![0.0; n];
        for (k, s) in series.iter().enumerate() {
            let bars = s.values.iter().enumerate().map(|(i, &v)| {
                let left = if stacked { i as f64 - 0.4 } else { i as f64 - 0.4 + k as f64 * width };
                let bottom = if stacked { base[i] } else { 0.0 };
                Rectangle::new([(left, bottom), (left + width, bottom + v)], s.color.filled())
            });
            chart
                .draw_series(bars)?
                .label(s.name)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], s.color.filled()));
            if stacked {
                for (i, v) in s.values.iter().enumerate() {
                    base[i] += v;
                }
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FONT, 12))
            .draw()?;
        root.present()?;
        Ok(())
    })());
    figure(id, title, points, svg + &error)
}

/// The label of the category nearest `x`, shortened only when the room
/// its category has on the axis (the chart's `width` shared by all of them,
/// about 6.5 px a character at 11 px) cannot hold it.
fn label_at(labels: &[String], x: f64, width: u32) -> String {
    let i = x.round();
    if (x - i).abs() > 0.01 || i < 0.0 {
        return String::new();
    }
    let label = labels.get(i as usize).map(String::as_str).unwrap_or("");
    let room = label_room(labels.len(), width);
    if label.chars().count() > room {
        format!("{}…", label.chars().take(room - 1).collect::<String>())
    } else {
        label.to_owned()
    }
}

/// Characters a category label has room for when `n` share an axis `width` wide.
fn label_room(n: usize, width: u32) -> usize {
    ((width as usize - 90) * 2 / (13 * n.max(1))).clamp(8, 40)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_cut_only_when_they_do_not_fit() {
        let cells: Vec<String> =
            ["member", "member, privileged", "guest", "unknown, privileged"].iter().map(|s| s.to_string()).collect();
        for x in 0..cells.len() {
            assert_eq!(label_at(&cells, x as f64, W_BARS), cells[x], "four categories have room");
        }
        // The legacy protocols as Entra names them, side by side.
        let protocols: Vec<String> =
            ["POP3", "Other clients", "Authenticated SMTP", "IMAP4", "Exchange ActiveSync", "Exchange Web Services"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        for x in 0..protocols.len() {
            assert_eq!(label_at(&protocols, x as f64, W_BARS), protocols[x]);
        }
        let policies = vec!["CA002: Block legacy authentication".to_string(); 2];
        assert_eq!(label_at(&policies, 0.0, W_BARS), policies[0]);
        let many = vec!["a label far too long for thirty bars".to_string(); 30];
        let cut = label_at(&many, 0.0, W_BARS);
        assert!(cut.ends_with('…') && cut.chars().count() == label_room(30, W_BARS), "{cut}");
    }
}
