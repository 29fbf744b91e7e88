//! Aligned plain-text tables: a header row, columns padded to their widest cell, two spaces
//! between columns, numbers right-aligned where asked, no trailing spaces.

use crate::format::one_line;

/// A table being filled.
pub struct Table {
    /// Column headers; empty for a table without a header row.
    headers: Vec<String>,
    /// Per column: right-aligned.
    right: Vec<bool>,
    /// The cells, one line each.
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers (shown as given).
    pub fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            right: vec![false; headers.len()],
            rows: Vec::new(),
        }
    }

    /// A table without a header row (key/value lists).
    pub fn headless(columns: usize) -> Self {
        Self {
            headers: Vec::new(),
            right: vec![false; columns],
            rows: Vec::new(),
        }
    }

    /// Right-aligns the columns at these indexes.
    pub fn right(mut self, columns: &[usize]) -> Self {
        for &c in columns {
            if let Some(r) = self.right.get_mut(c) {
                *r = true;
            }
        }
        self
    }

    /// Adds a row; every cell is made one line. Missing cells are empty, extra ones dropped.
    pub fn row(&mut self, cells: Vec<String>) {
        let mut cells: Vec<String> = cells.iter().map(|c| one_line(c)).collect();
        cells.resize(self.right.len(), String::new());
        self.rows.push(cells);
    }

    /// True when no row was added.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, one line per row, each ending with a newline.
    pub fn render(&self) -> String {
        let columns = self.right.len();
        let mut widths = vec![0usize; columns];
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let header = (!self.headers.is_empty()).then_some(&self.headers);
        for row in header.into_iter().chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = widths[i].saturating_sub(cell.chars().count());
                if self.right[i] {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns_without_trailing_spaces() {
        let mut t = Table::new(&["NAME", "SIZE", "NOTE"]).right(&[1]);
        t.row(vec!["a".into(), "1 B".into(), String::new()]);
        t.row(vec!["longer".into(), "12.5 KiB".into(), "two\nlines".into()]);
        assert_eq!(
            t.render(),
            "NAME        SIZE  NOTE\na            1 B\nlonger  12.5 KiB  two lines\n"
        );
    }
}
