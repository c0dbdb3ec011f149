//! Plain-text tables: a header row and left-aligned columns two spaces apart.

/// Renders `rows` under `headers`, every column as wide as its widest cell.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers
        .iter()
        .map(|header| header.chars().count())
        .collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header_cells: Vec<String> = headers.iter().map(|header| (*header).to_owned()).collect();
    for row in std::iter::once(&header_cells).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Columns are as wide as their widest cell; trailing spaces are trimmed.
    #[test]
    fn columns_align() {
        let table = render(
            &["NAME", "PARTITIONS"],
            &[
                vec!["orders".into(), "3".into()],
                vec!["x".into(), "12".into()],
            ],
        );
        assert_eq!(table, "NAME    PARTITIONS\norders  3\nx       12\n");
    }
}
