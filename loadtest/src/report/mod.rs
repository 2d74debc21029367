//! `--report FILE.html`: one self-contained page (inline CSS and SVG; no scripts, stylesheets
//! or fonts fetched) with a run's parameters, its summary, latency histograms and throughput
//! over time.
//!
//! - [`html`]: renders a [`Page`], escaping everything that came from the user or the wire.
//! - [`plots`]: the SVG charts, drawn with plotters.
//! - `signal`, `turn`, `nat`: what each scenario puts on its page ([`Page::signal`],
//!   [`Page::turn`], [`Page::nat`]).
//!
//! [`ReportFile`] checks that the path can be written before a run starts, then writes the
//! page atomically: a temporary file beside it, renamed over it.

pub mod html;
mod nat;
pub mod plots;
mod signal;
mod turn;

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::stats::Tally;

/// What one report page shows.
#[derive(Debug, Clone)]
pub struct Page {
    /// Scenario name, e.g. `signal`.
    pub scenario: &'static str,
    /// Options of the run, as label and value.
    pub parameters: Vec<(&'static str, String)>,
    /// The headline figures, as in the human table.
    pub summary: Vec<Figure>,
    /// Latency per step and errors per kind.
    pub tally: Tally,
    /// One histogram per step.
    pub latency: Vec<Chart>,
    /// Counts per second over the run (none for scenarios without a timeline).
    pub throughput: Vec<Chart>,
    /// Further tables after the summary, e.g. one row per NAT pairing.
    pub tables: Vec<Table>,
}

/// A table of figures; `id` names it in the HTML.
#[derive(Debug, Clone)]
pub struct Table {
    pub id: &'static str,
    pub title: String,
    pub header: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

/// One headline figure; `id` names it in the HTML as in the JSON report.
#[derive(Debug, Clone)]
pub struct Figure {
    pub id: &'static str,
    pub label: &'static str,
    pub value: String,
}

impl Figure {
    pub fn new(id: &'static str, label: &'static str, value: impl ToString) -> Self {
        Self {
            id,
            label,
            value: value.to_string(),
        }
    }
}

/// One latency histogram per step of `tally`, titled by the scenario's `title`.
fn latency_charts(tally: &Tally, title: fn(&str) -> String) -> Vec<Chart> {
    tally
        .steps
        .iter()
        .map(|(step, latency)| Chart {
            title: title(step),
            svg: plots::histogram(latency),
        })
        .collect()
}

/// A titled SVG chart, or why it could not be drawn (the rest of the page still is).
#[derive(Debug, Clone)]
pub struct Chart {
    pub title: String,
    pub svg: Result<String, String>,
}

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot write report {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write report {}: it is a directory", path.display())]
    IsDirectory { path: PathBuf },
}

/// A report file being prepared: its temporary file exists from [`ReportFile::create`] on,
/// so a path that cannot be written fails before any load is sent.
#[derive(Debug)]
pub struct ReportFile {
    path: PathBuf,
    temp: PathBuf,
    file: Option<File>,
}

impl ReportFile {
    /// Opens a temporary file beside `path`.
    pub fn create(path: &Path) -> Result<Self, ReportError> {
        let write_error = |source| ReportError::Write {
            path: path.to_owned(),
            source,
        };
        if path.is_dir() {
            return Err(ReportError::IsDirectory {
                path: path.to_owned(),
            });
        }
        let Some(name) = path.file_name() else {
            let source = io::Error::new(io::ErrorKind::InvalidInput, "no file name");
            return Err(write_error(source));
        };
        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(".{}.tmp", std::process::id()));
        let temp = path.with_file_name(temp_name);
        let file = File::create(&temp).map_err(write_error)?;
        Ok(Self {
            path: path.to_owned(),
            temp,
            file: Some(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `html` and renames the temporary file over the report path.
    pub fn commit(mut self, html: &str) -> Result<(), ReportError> {
        let result = self.write_and_rename(html);
        result.map_err(|source| ReportError::Write {
            path: self.path.clone(),
            source,
        })
    }

    fn write_and_rename(&mut self, html: &str) -> io::Result<()> {
        let mut file = self.file.take().ok_or(io::ErrorKind::BrokenPipe)?;
        file.write_all(html.as_bytes())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&self.temp, &self.path)
    }
}

impl Drop for ReportFile {
    /// Removes the temporary file unless it became the report (then it is gone already).
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.temp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_atomically_and_leaves_no_temporary_file() {
        let dir = std::env::temp_dir().join(format!("loadtest-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("r.html");
        ReportFile::create(&path)
            .unwrap()
            .commit("<p>one</p>")
            .unwrap();
        ReportFile::create(&path)
            .unwrap()
            .commit("<p>two</p>")
            .unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "<p>two</p>");
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 1, "{left:?}");

        // A rename that fails late is an error, not a panic, and cleans up.
        let file = ReportFile::create(&dir.join("late.html")).unwrap();
        std::fs::create_dir(dir.join("late.html")).unwrap();
        std::fs::write(dir.join("late.html").join("x"), "keep").unwrap();
        let err = file.commit("<p/>").unwrap_err().to_string();
        assert!(err.contains("cannot write report"), "{err}");
        assert!(matches!(
            ReportFile::create(&dir.join("late.html")),
            Err(ReportError::IsDirectory { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
