//! Metrics as SVG line charts (`plotters`, its SVG backend only: text is left to the browser,
//! so no font is needed here).

use plotters::prelude::*;

/// One line of a chart.
pub(super) struct Series {
    pub label: String,
    /// (iteration, value), in iteration order.
    pub points: Vec<(f64, f64)>,
}

/// A line chart titled `title`, one line per series with a legend; non-finite values are left
/// out. `None` when nothing can be drawn.
pub(super) fn line_chart(title: &str, series: &[Series]) -> Option<String> {
    let finite = |&(x, y): &(f64, f64)| x.is_finite() && y.is_finite();
    let all: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied().filter(finite))
        .collect();
    if all.is_empty() {
        return None;
    }
    let span = |values: &mut dyn Iterator<Item = f64>| {
        let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
        // A flat line still needs a range to be drawn in.
        let pad = if hi > lo {
            (hi - lo) * 0.05
        } else {
            lo.abs().max(1.0) * 0.5
        };
        (lo - pad)..(hi + pad)
    };
    let xs = span(&mut all.iter().map(|p| p.0));
    let ys = span(&mut all.iter().map(|p| p.1));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (640, 320)).into_drawing_area();
        root.fill(&WHITE).ok()?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(28)
            .y_label_area_size(56)
            .build_cartesian_2d(xs, ys)
            .ok()?;
        chart
            .configure_mesh()
            .x_desc("iteration")
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .ok()?;
        for (i, s) in series.iter().enumerate() {
            let colour = Palette99::pick(i).to_rgba();
            let points: Vec<(f64, f64)> = s.points.iter().copied().filter(finite).collect();
            let drawn = if points.len() == 1 {
                chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, colour.filled())))
            } else {
                chart.draw_series(LineSeries::new(points, colour.stroke_width(2)))
            };
            drawn
                .ok()?
                .label(s.label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .ok()?;
        root.present().ok()?;
    }
    Some(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_has_its_title_lines_and_legend() {
        let svg = line_chart(
            "loss <train>",
            &[
                Series {
                    label: "train".into(),
                    points: vec![(0.0, 1.0), (1.0, 0.5), (2.0, 0.25)],
                },
                Series {
                    label: "eval".into(),
                    points: vec![(0.0, 1.2), (1.0, f64::NAN), (2.0, 0.4)],
                },
            ],
        )
        .unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("loss &lt;train&gt;"), "the title is escaped");
        assert!(
            svg.contains("\ntrain\n</text>") && svg.contains("\neval\n</text>"),
            "a legend entry per series: {svg}"
        );
        assert!(svg.matches("<polyline").count() >= 2, "a line per series");
    }

    #[test]
    fn nothing_finite_draws_nothing_and_one_point_draws_a_dot() {
        let nan = Series {
            label: "x".into(),
            points: vec![(0.0, f64::NAN)],
        };
        assert!(line_chart("t", &[nan]).is_none());
        let one = Series {
            label: "x".into(),
            points: vec![(3.0, 7.0)],
        };
        assert!(line_chart("t", &[one]).unwrap().contains("<circle"));
    }
}
