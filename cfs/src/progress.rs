//! A progress line on stderr for long copies (`cfs put/get`): bytes, percent, rate and time
//! left, redrawn at most ten times a second. Only when stderr is a terminal and the copy is
//! big enough to wait for, so scripts and pipes see nothing.
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// Copies smaller than this finish before a bar would be worth reading.
const MIN_BYTES: u64 = 8 << 20;

pub struct Progress {
    label: String,
    total: Option<u64>,
    done: u64,
    started: Instant,
    drawn: Option<Instant>,
    on: bool,
}

fn stderr_is_tty() -> bool {
    // SAFETY: isatty only inspects the descriptor number.
    unsafe { libc::isatty(2) == 1 }
}

impl Progress {
    pub fn new(label: &str, total: Option<u64>) -> Progress {
        Progress {
            label: label.to_string(),
            total,
            done: 0,
            started: Instant::now(),
            drawn: None,
            on: stderr_is_tty() && total.is_none_or(|t| t >= MIN_BYTES),
        }
    }

    pub fn add(&mut self, n: u64) {
        self.done += n;
        if self.on
            && self
                .drawn
                .is_none_or(|t| t.elapsed() >= Duration::from_millis(100))
        {
            self.draw();
        }
    }

    fn line(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = self.done as f64 / secs;
        let h = crate::admin::human;
        match self.total {
            Some(t) if t > 0 => {
                let frac = (self.done as f64 / t as f64).min(1.0);
                let width = 24;
                let full = (frac * width as f64) as usize;
                let left = if rate > 0.0 {
                    crate::timefmt::duration(((t - self.done.min(t)) as f64 / rate) as u64)
                } else {
                    "?".into()
                };
                format!(
                    "{} [{}{}] {:>3.0}% {} of {} {}/s, {} left",
                    self.label,
                    "#".repeat(full),
                    "-".repeat(width - full),
                    frac * 100.0,
                    h(self.done),
                    h(t),
                    h(rate as u64),
                    left
                )
            }
            _ => format!("{} {} {}/s", self.label, h(self.done), h(rate as u64)),
        }
    }

    fn draw(&mut self) {
        let mut e = std::io::stderr().lock();
        let _ = write!(e, "\r\x1b[K{}", self.line());
        let _ = e.flush();
        self.drawn = Some(Instant::now());
    }

    /// The final line, left on screen.
    pub fn finish(&mut self) {
        if self.on {
            self.draw();
            let _ = writeln!(std::io::stderr());
            self.on = false;
        }
    }
}

/// A reader that reports what passes through it.
pub struct CountingReader<'a, R> {
    pub inner: R,
    pub progress: &'a mut Progress,
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.add(n as u64);
        Ok(n)
    }
}

/// A writer that reports what passes through it.
pub struct CountingWriter<'a, W> {
    pub inner: W,
    pub progress: &'a mut Progress,
}

impl<W: Write> Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.progress.add(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
