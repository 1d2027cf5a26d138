//! `--progress tty`: live lines on a terminal (indicatif).
//!
//! Each running task has a line with a spinner, its number and name, its counts and a timer;
//! beneath a running step, its last few output lines (dimmed, clipped to the terminal's width,
//! cleaned of carriage returns and escape sequences so they cannot move the cursor). A finished
//! task collapses to one line printed above the live ones through indicatif (`#N NAME  DONE
//! 1.2s`, `#N NAME  CACHED`, `#N NAME  ERROR: …`), so output never tears the bars. The full
//! output of a step is not kept here: `plain` and `rawjson` carry every line.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::secs;
use crate::progress::{CacheStatus, Event, Sink, TaskId, Unit};

/// How the tty view looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtyOptions {
    /// Output lines shown beneath a running step.
    pub tail: usize,
    /// Whether spinners and timers tick on their own (off in tests, for stable frames).
    pub tick: bool,
}

impl Default for TtyOptions {
    fn default() -> TtyOptions {
        TtyOptions { tail: 6, tick: true }
    }
}

struct TtyTask {
    bar: ProgressBar,
    name: String,
    cached: bool,
    /// The last output lines, oldest first, and one bar per shown line.
    tail: VecDeque<String>,
    lines: Vec<ProgressBar>,
}

/// Live lines on a terminal: see the module doc.
pub struct Tty {
    multi: MultiProgress,
    options: TtyOptions,
    tasks: Mutex<HashMap<TaskId, TtyTask>>,
}

impl Tty {
    /// A view drawing to `target` (stderr, or a test's in-memory terminal).
    pub fn new(target: ProgressDrawTarget, options: TtyOptions) -> Tty {
        Tty { multi: MultiProgress::with_draw_target(target), options, tasks: Mutex::new(HashMap::new()) }
    }

    fn style(template: &str) -> ProgressStyle {
        ProgressStyle::with_template(template).expect("the templates are valid").progress_chars("=> ")
    }

    /// Prints a finished line above the live ones (which are redrawn below it).
    fn print(&self, line: &str) {
        let _ = self.multi.println(line);
    }

    /// Number of tasks with a live line, for tests.
    #[cfg(test)]
    pub fn running(&self) -> usize {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Shows `task`'s tail: one dimmed bar per kept line, created beneath the previous one.
    fn show_tail(&self, task: &mut TtyTask) {
        while task.lines.len() < task.tail.len() {
            let after = task.lines.last().unwrap_or(&task.bar).clone();
            let bar = ProgressBar::no_length().with_style(Tty::style("    {wide_msg:.dim}"));
            task.lines.push(self.multi.insert_after(&after, bar));
        }
        for (bar, line) in task.lines.iter().zip(&task.tail) {
            bar.set_message(line.clone());
        }
    }
}

impl Sink for Tty {
    fn event(&self, event: &Event) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        let id = event.id();
        match event {
            Event::TaskStarted { name, .. } => {
                let bar = ProgressBar::no_length()
                    .with_style(Tty::style("{spinner} #{prefix} {wide_msg} {elapsed:>4}"))
                    .with_prefix(id.to_string())
                    .with_message(name.clone());
                let bar = self.multi.add(bar);
                if self.options.tick {
                    bar.enable_steady_tick(Duration::from_millis(100));
                } else {
                    bar.tick();
                }
                let task = TtyTask { bar, name: name.clone(), cached: false, tail: VecDeque::new(), lines: Vec::new() };
                tasks.insert(id, task);
            }
            Event::TaskProgress { current, total, unit, .. } => {
                if let Some(task) = tasks.get(&id) {
                    let counts = match unit {
                        Unit::Bytes => "{decimal_bytes}/{decimal_total_bytes}",
                        Unit::Items => "{pos}/{len}",
                    };
                    let template = match total {
                        Some(t) => {
                            task.bar.set_length(*t);
                            format!("{{spinner}} #{{prefix}} {{wide_msg}} [{{bar:25}}] {counts} {{elapsed:>4}}")
                        }
                        None => {
                            let counts = if *unit == Unit::Bytes { "{decimal_bytes}" } else { "{pos}" };
                            format!("{{spinner}} #{{prefix}} {{wide_msg}} {counts} {{elapsed:>4}}")
                        }
                    };
                    task.bar.set_style(Tty::style(&template));
                    task.bar.set_position(*current);
                }
            }
            Event::TaskLog { line, .. } => {
                if let Some(task) = tasks.get_mut(&id) {
                    if self.options.tail == 0 {
                        return;
                    }
                    if task.tail.len() == self.options.tail {
                        task.tail.pop_front();
                    }
                    task.tail.push_back(display_line(line));
                    self.show_tail(task);
                }
            }
            Event::TaskCache { status, .. } => {
                if let Some(task) = tasks.get_mut(&id) {
                    let note = match status {
                        CacheStatus::Hit { .. } => {
                            task.cached = true;
                            "CACHED".to_string()
                        }
                        CacheStatus::Miss { reason } => format!("(cache miss: {reason})"),
                    };
                    task.bar.set_message(format!("{} {note}", task.name));
                }
            }
            Event::TaskDone { duration, .. } | Event::TaskFailed { duration, .. } => {
                if let Some(task) = tasks.remove(&id) {
                    for bar in task.lines.iter().chain([&task.bar]) {
                        bar.finish_and_clear();
                        self.multi.remove(bar);
                    }
                    let outcome = match event {
                        Event::TaskFailed { error, .. } => format!("ERROR: {error}"),
                        _ if task.cached => "CACHED".to_string(),
                        _ => format!("DONE {}", secs(*duration)),
                    };
                    self.print(&format!("#{id} {}  {outcome}", task.name));
                }
            }
        }
    }
}

/// What a terminal would show of an output line, made safe to draw inside the live view: the
/// text after the last carriage return (progress meters redraw that way), without escape
/// sequences or other control characters, tabs as spaces.
pub fn display_line(line: &str) -> String {
    let visible = line.rsplit('\r').find(|s| !s.is_empty()).unwrap_or("");
    let mut out = String::with_capacity(visible.len());
    let mut chars = visible.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.next() {
                // CSI: parameters and intermediates, up to a final byte in @..~.
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                // OSC, DCS, ...: up to BEL or ST (ESC \).
                Some(']' | 'P' | '^' | '_' | 'X') => {
                    while let Some(c) = chars.next() {
                        if c == '\x07' || (c == '\x1b' && chars.next_if_eq(&'\\').is_some()) {
                            break;
                        }
                    }
                }
                _ => {}
            },
            '\t' => out.push_str("    "),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::Arc;

    use indicatif::TermLike;

    use super::super::tests::script;
    use super::*;
    use crate::progress::LogStream;

    const WIDTH: usize = 60;

    /// A terminal in memory: a grid that grows downward (scrollback kept), with autowrap at the
    /// right margin, enough for indicatif's drawing.
    #[derive(Debug, Clone, Default)]
    struct Screen(Arc<Mutex<Grid>>);

    #[derive(Debug, Default)]
    struct Grid {
        rows: Vec<Vec<char>>,
        row: usize,
        col: usize,
    }

    impl Grid {
        fn ensure(&mut self) {
            while self.rows.len() <= self.row {
                self.rows.push(Vec::new());
            }
        }

        fn put(&mut self, c: char) {
            match c {
                '\r' => self.col = 0,
                '\n' => {
                    self.row += 1;
                    self.col = 0;
                }
                c => {
                    if self.col >= WIDTH {
                        self.row += 1;
                        self.col = 0;
                    }
                    self.ensure();
                    let row = &mut self.rows[self.row];
                    row.resize(row.len().max(self.col + 1), ' ');
                    row[self.col] = c;
                    self.col += 1;
                }
            }
            self.ensure();
        }
    }

    impl Screen {
        /// The non-blank rows, right-trimmed.
        fn rows(&self) -> Vec<String> {
            let grid = self.0.lock().unwrap();
            grid.rows
                .iter()
                .map(|r| r.iter().collect::<String>().trim_end().to_string())
                .filter(|r| !r.is_empty())
                .collect()
        }
    }

    impl TermLike for Screen {
        fn width(&self) -> u16 {
            WIDTH as u16
        }
        fn height(&self) -> u16 {
            40
        }
        fn move_cursor_up(&self, n: usize) -> io::Result<()> {
            let mut g = self.0.lock().unwrap();
            g.row = g.row.saturating_sub(n);
            g.col = g.col.min(WIDTH - 1);
            Ok(())
        }
        fn move_cursor_down(&self, n: usize) -> io::Result<()> {
            let mut g = self.0.lock().unwrap();
            g.row += n;
            g.ensure();
            Ok(())
        }
        fn move_cursor_right(&self, n: usize) -> io::Result<()> {
            let mut g = self.0.lock().unwrap();
            g.col = (g.col + n).min(WIDTH - 1);
            Ok(())
        }
        fn move_cursor_left(&self, n: usize) -> io::Result<()> {
            let mut g = self.0.lock().unwrap();
            g.col = g.col.saturating_sub(n);
            Ok(())
        }
        fn write_line(&self, s: &str) -> io::Result<()> {
            self.write_str(s)?;
            self.0.lock().unwrap().put('\n');
            Ok(())
        }
        fn write_str(&self, s: &str) -> io::Result<()> {
            // Styles (when the test's stderr enables them) take no columns.
            let mut g = self.0.lock().unwrap();
            for c in display_line_keep_cr(s).chars() {
                g.put(c);
            }
            Ok(())
        }
        fn clear_line(&self) -> io::Result<()> {
            let mut g = self.0.lock().unwrap();
            g.ensure();
            let row = g.row;
            g.rows[row].clear();
            g.col = 0;
            Ok(())
        }
        fn flush(&self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Escape sequences removed, carriage returns kept (the screen interprets them).
    fn display_line_keep_cr(s: &str) -> String {
        s.split('\r').map(display_line).collect::<Vec<_>>().join("\r")
    }

    fn tty(tail: usize) -> (Tty, Screen) {
        let screen = Screen::default();
        let target = ProgressDrawTarget::term_like(Box::new(screen.clone()));
        (Tty::new(target, TtyOptions { tail, tick: false }), screen)
    }

    fn log(id: TaskId, line: &str) -> Event {
        Event::TaskLog { id, stream: LogStream::Stdout, line: line.into() }
    }

    #[test]
    fn tty_keeps_a_line_per_running_task() {
        let (tty, _screen) = tty(6);
        let mut running = Vec::new();
        for (_, event) in script() {
            tty.event(&event);
            running.push(tty.running());
        }
        assert_eq!(running, [1, 2, 2, 2, 2, 2, 2, 2, 1, 0, 1, 1, 1, 0]);
    }

    #[test]
    fn running_steps_show_their_last_lines_beneath_them() {
        let (tty, screen) = tty(3);
        tty.event(&Event::TaskStarted { id: 1, name: "[build 1/2] RUN make".into() });
        tty.event(&Event::TaskStarted { id: 2, name: "[test 1/1] RUN ./check".into() });
        for i in 1..=5 {
            tty.event(&log(1, &format!("make line {i}")));
        }
        tty.event(&log(2, "check \x1b[32mok\x1b[0m\r"));
        tty.event(&log(2, "download 10%\rdownload 100%"));
        let rows = screen.rows();
        let at = |needle: &str| {
            rows.iter().position(|r| r.contains(needle)).unwrap_or_else(|| panic!("{needle}: {rows:#?}"))
        };
        // Step 1, then its last three lines, then step 2 and its lines.
        let order = [
            "#1 [build 1/2] RUN make",
            "make line 3",
            "make line 4",
            "make line 5",
            "#2 [test 1/1]",
            "check ok",
            "download 100%",
        ];
        let positions: Vec<usize> = order.iter().map(|n| at(n)).collect();
        assert!(positions.windows(2).all(|w| w[0] + 1 == w[1]), "{rows:#?}");
        assert!(!rows.iter().any(|r| r.contains("make line 2") || r.contains("download 10%")), "{rows:#?}");
        // The tail is indented beneath its step.
        assert!(rows[at("make line 5")].starts_with("    make line 5"), "{rows:#?}");

        tty.event(&Event::TaskDone { id: 1, duration: Duration::from_millis(1234) });
        tty.event(&Event::TaskStarted { id: 3, name: "[build 2/2] COPY app /".into() });
        tty.event(&Event::TaskCache { id: 3, status: CacheStatus::Hit { from: None } });
        tty.event(&Event::TaskDone { id: 3, duration: Duration::from_millis(1) });
        let rows = screen.rows();
        assert_eq!(rows[0], "#1 [build 1/2] RUN make  DONE 1.2s", "{rows:#?}");
        assert_eq!(rows[1], "#3 [build 2/2] COPY app /  CACHED", "{rows:#?}");
        assert!(!rows.iter().any(|r| r.contains("make line")), "the finished step's tail is gone: {rows:#?}");
        assert!(rows[2].contains("#2 [test 1/1] RUN ./check"), "{rows:#?}");
        assert_eq!(rows[3..], ["    check ok", "    download 100%"], "{rows:#?}");

        tty.event(&Event::TaskFailed { id: 2, duration: Duration::from_millis(50), error: "exit code 1".into() });
        assert_eq!(tty.running(), 0);
        assert_eq!(screen.rows()[2], "#2 [test 1/1] RUN ./check  ERROR: exit code 1");
        assert_eq!(screen.rows().len(), 3, "{:#?}", screen.rows());
    }

    #[test]
    fn display_lines_cannot_move_the_cursor() {
        assert_eq!(display_line("plain"), "plain");
        assert_eq!(display_line("50%\r100%"), "100%");
        assert_eq!(display_line("done\r"), "done");
        assert_eq!(display_line("\x1b[1;31mred\x1b[0m and \x1b]0;title\x07text"), "red and text");
        assert_eq!(display_line("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\"), "link");
        assert_eq!(display_line("a\tb\x08\x07c\x1b[2K"), "a    bc");
        assert_eq!(display_line("\x1b[A\x1b[2Jup"), "up");
        assert_eq!(display_line(""), "");
    }
}
