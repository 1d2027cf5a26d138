//! `--progress plain`: one line per event, in order, never redrawn or clipped: logs and CI.
//!
//! On GitHub Actions (`GITHUB_ACTIONS=true`) and GitLab CI (`GITLAB_CI=true`) each task's lines
//! are folded into a collapsible group (`::group::` / GitLab sections) titled `#N NAME`; the end
//! line (`#N DONE 1.2s`, `#N ERROR: …`) follows the group, so a collapsed log still shows how
//! every step ended.
//!
//! Parallel tasks: a group never holds another task's line. One group is open at a time; lines
//! of other tasks wait in memory (with the timings they had when they arrived) until the open
//! group closes. It closes when its task ends, or early — reopened later as `#N NAME
//! (continued)` — when a waiting task has ended, when the open task has been quiet for
//! [`QUIET`] while another waits, or when more than [`MAX_WAITING_BYTES`] wait (checked as each
//! event arrives: there is no timer thread). Waiting tasks then get their groups, ended ones
//! first, each in start order. Nothing is dropped: dropping the renderer (the end of the
//! command) prints whatever still waits.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Clock, amount, secs};
use crate::progress::{CacheStatus, Event, LogStream, Sink, TaskId};

/// Plain output prints a task's progress at most this often.
const PLAIN_PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// An open group whose task printed nothing for this long yields to a waiting task.
pub const QUIET: Duration = Duration::from_secs(1);

/// More waiting output than this makes the open group yield at once.
pub const MAX_WAITING_BYTES: usize = 1 << 20;

/// How plain output folds each task's lines for a CI log viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Folding {
    /// No folding: today's plain lines.
    None,
    /// GitHub Actions workflow commands `::group::TITLE` / `::endgroup::`.
    GitHub,
    /// GitLab collapsible sections (`section_start` / `section_end`), collapsed.
    GitLab,
}

impl Folding {
    /// From the environment: `GITHUB_ACTIONS=true` or `GITLAB_CI=true`, else none.
    pub fn detect(var: impl Fn(&str) -> Option<String>) -> Folding {
        if var("GITHUB_ACTIONS").as_deref() == Some("true") {
            Folding::GitHub
        } else if var("GITLAB_CI").as_deref() == Some("true") {
            Folding::GitLab
        } else {
            Folding::None
        }
    }
}

struct PlainTask {
    name: String,
    started: SystemTime,
    /// When a progress line was last printed, and the latest progress not printed yet.
    printed_at: Option<SystemTime>,
    pending: Option<String>,
}

/// A task's output on its way to its group (waiting while another task's group is open).
struct Waiting {
    name: String,
    lines: Vec<String>,
    /// The task's end line once it ended.
    end: Option<String>,
}

/// The open group. Its first line is written only with the first line inside it, so a task that
/// yields before printing anything leaves no empty group behind.
struct Open {
    id: TaskId,
    last_line: SystemTime,
    /// `#N NAME` or `#N NAME (continued)`.
    title: String,
    shown: bool,
}

/// The folding state: at most one open group, and the tasks waiting for theirs.
struct Folds {
    kind: Folding,
    open: Option<Open>,
    waiting: BTreeMap<TaskId, Waiting>,
    waiting_bytes: usize,
    /// How many groups each live task has had (for `(continued)` and unique GitLab sections).
    groups: HashMap<TaskId, u32>,
}

struct PlainState<W> {
    out: Option<W>,
    tasks: HashMap<TaskId, PlainTask>,
    folds: Folds,
}

/// One line per event, in order, never redrawn: logs and CI.
pub struct Plain<W: Write> {
    state: Mutex<PlainState<W>>,
    clock: Clock,
}

impl<W: Write + Send> Plain<W> {
    /// Plain lines, each task folded as `folding` says.
    pub fn with_folding(out: W, clock: Clock, folding: Folding) -> Plain<W> {
        let folds =
            Folds { kind: folding, open: None, waiting: BTreeMap::new(), waiting_bytes: 0, groups: HashMap::new() };
        Plain { state: Mutex::new(PlainState { out: Some(out), tasks: HashMap::new(), folds }), clock }
    }

    /// Prints what still waits, then hands the writer back (for tests).
    #[cfg(test)]
    pub fn into_inner(self) -> W {
        let now = (self.clock)();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let PlainState { out, folds, .. } = &mut *state;
        let mut out = out.take().expect("the writer is taken only here");
        folds.finish(&mut out, now);
        out
    }
}

impl<W: Write> Drop for Plain<W> {
    fn drop(&mut self) {
        let now = (self.clock)();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let PlainState { out, folds, .. } = &mut *state;
        if let Some(out) = out {
            folds.finish(out, now);
        }
    }
}

impl<W: Write + Send> Sink for Plain<W> {
    fn event(&self, event: &Event) {
        let now = (self.clock)();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let PlainState { out, tasks, folds } = &mut *state;
        let Some(out) = out else { return };
        let id = event.id();
        let since = |t: &PlainTask| now.duration_since(t.started).unwrap_or_default();
        // Lines inside the task's group, and the end line after it.
        let mut lines = Vec::new();
        let mut end = None;
        match event {
            Event::TaskStarted { name, .. } => {
                tasks.insert(id, PlainTask { name: name.clone(), started: now, printed_at: None, pending: None });
                if folds.kind == Folding::None {
                    lines.push(format!("#{id} {name}"));
                }
            }
            Event::TaskProgress { current, total, unit, .. } => {
                if let Some(task) = tasks.get_mut(&id) {
                    let line = format!("#{id} {} {}", amount(*current, *total, *unit), secs(since(task)));
                    let due = task
                        .printed_at
                        .is_none_or(|t| now.duration_since(t).unwrap_or_default() >= PLAIN_PROGRESS_INTERVAL);
                    if due {
                        task.printed_at = Some(now);
                        task.pending = None;
                        lines.push(line);
                    } else {
                        task.pending = Some(line);
                    }
                }
            }
            Event::TaskLog { stream, line, .. } => {
                let at = tasks.get(&id).map(since).unwrap_or_default();
                let marker = if *stream == LogStream::Stderr { " stderr" } else { "" };
                lines.push(format!("#{id} {:.3}{marker} {line}", at.as_secs_f64()));
            }
            Event::TaskCache { status: CacheStatus::Hit { from }, .. } => lines.push(match from {
                Some(from) => format!("#{id} CACHED (from {from})"),
                None => format!("#{id} CACHED"),
            }),
            Event::TaskCache { status: CacheStatus::Miss { reason }, .. } => {
                lines.push(format!("#{id} cache miss: {reason}"));
            }
            Event::TaskDone { duration, .. } => {
                lines.extend(tasks.get_mut(&id).and_then(|t| t.pending.take()));
                end = Some(format!("#{id} DONE {}", secs(*duration)));
            }
            Event::TaskFailed { error, .. } => {
                lines.extend(tasks.get_mut(&id).and_then(|t| t.pending.take()));
                end = Some(format!("#{id} ERROR: {error}"));
            }
        }
        let name = match tasks.get(&id) {
            Some(t) => t.name.clone(),
            None => format!("task {id}"),
        };
        if end.is_some() {
            tasks.remove(&id);
        }
        if folds.kind == Folding::None {
            // Progress is best effort: a closed stderr must not fail the operation.
            for line in lines.iter().chain(&end) {
                let _ = writeln!(out, "{line}");
            }
        } else {
            folds.route(out, now, id, Waiting { name, lines, end });
        }
        let _ = out.flush();
    }
}

impl Folds {
    /// Prints `lines` (and `end`) of task `id` into its group, or makes them wait.
    fn route(&mut self, out: &mut dyn Write, now: SystemTime, id: TaskId, output: Waiting) {
        let Waiting { name, lines, end } = output;
        match &mut self.open {
            Some(open) if open.id != id => {
                let quiet = now.duration_since(open.last_line).unwrap_or_default() >= QUIET;
                self.waiting_bytes += lines.iter().map(|l| l.len() + 1).sum::<usize>();
                let waiting = self.waiting.entry(id).or_insert(Waiting { name, lines: Vec::new(), end: None });
                waiting.lines.extend(lines);
                let ended = end.is_some();
                waiting.end = end;
                if ended || quiet || self.waiting_bytes > MAX_WAITING_BYTES {
                    self.close(out, now);
                    self.drain(out, now);
                }
            }
            Some(open) => {
                open.last_line = now;
                if !lines.is_empty() {
                    self.show(out, now);
                    write_lines(out, &lines);
                }
                if let Some(end) = end {
                    match self.open.take_if(|o| !o.shown) {
                        // Nothing was ever printed for the task: its title alone, no group.
                        Some(open) => write_lines(out, &[open.title]),
                        None => self.close(out, now),
                    }
                    self.groups.remove(&id);
                    write_lines(out, &[end]);
                    self.drain(out, now);
                }
            }
            None => {
                if lines.is_empty() && self.groups.contains_key(&id) {
                    // Its group was closed early and nothing is left to put in it.
                    if let Some(end) = end {
                        self.groups.remove(&id);
                        write_lines(out, &[end]);
                    }
                    return;
                }
                self.open(now, id, &name);
                self.route(out, now, id, Waiting { name, lines, end });
            }
        }
    }

    /// Opens task `id`'s group (none may be open); its first line waits for content.
    fn open(&mut self, now: SystemTime, id: TaskId, name: &str) {
        let n = self.groups.entry(id).or_insert(0);
        *n += 1;
        let title = if *n > 1 { format!("#{id} {name} (continued)") } else { format!("#{id} {name}") };
        self.open = Some(Open { id, last_line: now, title, shown: false });
    }

    /// Writes the open group's first line, unless it is written already.
    fn show(&mut self, out: &mut dyn Write, now: SystemTime) {
        let Some(open) = self.open.as_mut().filter(|o| !o.shown) else { return };
        open.shown = true;
        let n = self.groups.get(&open.id).copied().unwrap_or(1);
        let line = match self.kind {
            Folding::GitHub => format!("::group::{}", open.title),
            Folding::GitLab => format!(
                "\x1b[0Ksection_start:{}:{}[collapsed=true]\r\x1b[0K{}",
                unix(now),
                section(open.id, n),
                open.title
            ),
            Folding::None => open.title.clone(),
        };
        write_lines(out, &[line]);
    }

    /// Closes the open group, if any; a group that never showed leaves no trace.
    fn close(&mut self, out: &mut dyn Write, now: SystemTime) {
        let Some(open) = self.open.take() else { return };
        let n = self.groups.get(&open.id).copied().unwrap_or(1);
        if !open.shown {
            match n {
                0 | 1 => self.groups.remove(&open.id),
                _ => self.groups.insert(open.id, n - 1),
            };
            return;
        }
        let line = match self.kind {
            Folding::GitHub => "::endgroup::".to_string(),
            Folding::GitLab => format!("\x1b[0Ksection_end:{}:{}\r\x1b[0K", unix(now), section(open.id, n)),
            Folding::None => return,
        };
        write_lines(out, &[line]);
    }

    /// Gives waiting tasks their groups — those that ended first, then the others, each in start
    /// order — until one that is still running keeps its group open.
    fn drain(&mut self, out: &mut dyn Write, now: SystemTime) {
        while self.open.is_none() {
            let ended = self.waiting.iter().find(|(_, w)| w.end.is_some()).map(|(id, _)| *id);
            let next = match ended {
                Some(id) => self.waiting.remove_entry(&id),
                None => self.waiting.pop_first(),
            };
            let Some((id, waiting)) = next else { break };
            self.waiting_bytes = self.waiting_bytes.saturating_sub(waiting.lines.iter().map(|l| l.len() + 1).sum());
            self.route(out, now, id, waiting);
        }
    }

    /// Closes the open group, showing it first when its task never printed anything (so the
    /// task's name appears at least once).
    fn settle(&mut self, out: &mut dyn Write, now: SystemTime) {
        if let Some(open) = &self.open
            && !open.shown
            && self.groups.get(&open.id) == Some(&1)
        {
            self.show(out, now);
        }
        self.close(out, now);
    }

    /// Prints everything still waiting, each in its own group, and closes the last one.
    fn finish(&mut self, out: &mut dyn Write, now: SystemTime) {
        self.settle(out, now);
        while let Some((id, waiting)) = self.waiting.pop_first() {
            self.route(out, now, id, waiting);
            self.settle(out, now);
        }
        self.waiting_bytes = 0;
        let _ = out.flush();
    }
}

fn write_lines(out: &mut dyn Write, lines: &[String]) {
    for line in lines {
        // Progress is best effort: a closed stderr must not fail the operation.
        let _ = writeln!(out, "{line}");
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A GitLab section name: unique per group of the run.
fn section(id: TaskId, n: u32) -> String {
    if n > 1 { format!("slipway_{id}_{n}") } else { format!("slipway_{id}") }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{fake_clock, feed, script};
    use super::*;

    fn render(folding: Folding, events: Vec<(u64, Event)>) -> String {
        let (clock, ms) = fake_clock(0);
        let plain = Plain::with_folding(Vec::new(), clock, folding);
        feed(&plain, &ms, events);
        String::from_utf8(plain.into_inner()).unwrap()
    }

    #[test]
    fn plain_output() {
        assert_eq!(
            render(Folding::None, script()),
            "\
#1 write layer
#2 [2/3] RUN make
#2 cache miss: file main.c changed
#1 1MB 0.1s
#1 3.5MB 1.2s
#2 1.250 cc -o main main.c
#1 4MB 1.3s
#1 DONE 1.4s
#2 ERROR: exit code 2
#3 [3/3] COPY . /app
#3 CACHED
#3 2 / 5 items 0.0s
#3 DONE 0.1s
"
        );
    }

    #[test]
    fn folding_is_detected_from_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
        };
        assert_eq!(Folding::detect(env(&[("GITHUB_ACTIONS", "true")])), Folding::GitHub);
        assert_eq!(Folding::detect(env(&[("GITLAB_CI", "true")])), Folding::GitLab);
        assert_eq!(Folding::detect(env(&[("GITHUB_ACTIONS", "false"), ("CI", "true")])), Folding::None);
        assert_eq!(Folding::detect(env(&[])), Folding::None);
    }

    fn log(id: TaskId, line: &str) -> Event {
        Event::TaskLog { id, stream: LogStream::Stdout, line: line.into() }
    }

    fn done(id: TaskId, ms: u64) -> Event {
        Event::TaskDone { id, duration: Duration::from_millis(ms) }
    }

    fn start(id: TaskId, name: &str) -> Event {
        Event::TaskStarted { id, name: name.into() }
    }

    /// Parallel steps whose lines interleave: a finished step takes the group at once, a quiet
    /// one yields to a waiting one, and everything ends in some group.
    fn interleaved() -> Vec<(u64, Event)> {
        let miss = |id| Event::TaskCache { id, status: CacheStatus::Miss { reason: "no cache record".into() } };
        vec![
            (0, start(1, "[build 1/2] RUN make")),
            (0, start(2, "[test 1/1] RUN ./check")),
            (10, miss(1)),
            (10, miss(2)),
            (100, log(1, "cc -c a.c")),
            (150, log(2, "checking...")),
            (200, log(1, "cc -c b.c")),
            (300, done(2, 300)),
            (400, log(1, "cc -o app a.o b.o")),
            (500, start(3, "[build 2/2] COPY app /")),
            (2200, done(1, 2200)),
            (2300, Event::TaskCache { id: 3, status: CacheStatus::Hit { from: None } }),
            (2400, done(3, 1900)),
            (3000, start(4, "[x 1/1] RUN sleep 5")),
            (3100, log(4, "sleeping")),
            (3200, start(5, "[y 1/1] RUN echo hi")),
            (4500, log(5, "hi")),
            (4600, log(4, "woke")),
            (4700, done(5, 1500)),
            (5000, Event::TaskFailed { id: 4, duration: Duration::from_millis(2000), error: "exit code 1".into() }),
        ]
    }

    /// Every `#N` line inside a group belongs to the group's task; every log line of the script
    /// is printed exactly once.
    fn check_groups(out: &str, open: &str, close: &str, events: &[(u64, Event)]) {
        let mut current: Option<String> = None;
        for line in out.lines() {
            if let Some(title) = line.split(open).nth(1) {
                assert!(current.is_none(), "nested group at {line:?}:\n{out}");
                current = Some(title.split(' ').next().unwrap().to_string());
            } else if line.contains(close) {
                assert!(current.take().is_some(), "close without open:\n{out}");
            } else if let Some(group) = &current {
                assert_eq!(line.split(' ').next(), Some(group.as_str()), "{line:?} in group {group}:\n{out}");
            }
        }
        assert!(current.is_none(), "a group was left open:\n{out}");
        for (_, e) in events {
            if let Event::TaskLog { line, .. } = e {
                let printed = out
                    .lines()
                    .filter(|l| {
                        let mut parts = l.splitn(3, ' ');
                        let (_, at, text) = (parts.next(), parts.next(), parts.next());
                        at.is_some_and(|t| t.parse::<f64>().is_ok()) && text == Some(line.as_str())
                    })
                    .count();
                assert_eq!(printed, 1, "{line:?}:\n{out}");
            }
        }
    }

    #[test]
    fn github_groups_never_mix_steps() {
        let out = render(Folding::GitHub, interleaved());
        check_groups(&out, "::group::", "::endgroup::", &interleaved());
        insta::assert_snapshot!(out, @r"
        ::group::#1 [build 1/2] RUN make
        #1 cache miss: no cache record
        #1 0.100 cc -c a.c
        #1 0.200 cc -c b.c
        ::endgroup::
        ::group::#2 [test 1/1] RUN ./check
        #2 cache miss: no cache record
        #2 0.150 checking...
        ::endgroup::
        #2 DONE 0.3s
        ::group::#1 [build 1/2] RUN make (continued)
        #1 0.400 cc -o app a.o b.o
        ::endgroup::
        #1 DONE 2.2s
        ::group::#3 [build 2/2] COPY app /
        #3 CACHED
        ::endgroup::
        #3 DONE 1.9s
        ::group::#4 [x 1/1] RUN sleep 5
        #4 0.100 sleeping
        ::endgroup::
        ::group::#5 [y 1/1] RUN echo hi
        #5 1.300 hi
        ::endgroup::
        #5 DONE 1.5s
        ::group::#4 [x 1/1] RUN sleep 5 (continued)
        #4 1.600 woke
        ::endgroup::
        #4 ERROR: exit code 1
        ");
    }

    #[test]
    fn gitlab_sections_never_mix_steps() {
        let out = render(Folding::GitLab, interleaved());
        check_groups(&out, "[collapsed=true]\r\x1b[0K", "section_end:", &interleaved());
        let shown = out.replace('\x1b', "␛").replace('\r', "␍");
        insta::assert_snapshot!(shown, @r"
        ␛[0Ksection_start:1700000000:slipway_1[collapsed=true]␍␛[0K#1 [build 1/2] RUN make
        #1 cache miss: no cache record
        #1 0.100 cc -c a.c
        #1 0.200 cc -c b.c
        ␛[0Ksection_end:1700000000:slipway_1␍␛[0K
        ␛[0Ksection_start:1700000000:slipway_2[collapsed=true]␍␛[0K#2 [test 1/1] RUN ./check
        #2 cache miss: no cache record
        #2 0.150 checking...
        ␛[0Ksection_end:1700000000:slipway_2␍␛[0K
        #2 DONE 0.3s
        ␛[0Ksection_start:1700000000:slipway_1_2[collapsed=true]␍␛[0K#1 [build 1/2] RUN make (continued)
        #1 0.400 cc -o app a.o b.o
        ␛[0Ksection_end:1700000002:slipway_1_2␍␛[0K
        #1 DONE 2.2s
        ␛[0Ksection_start:1700000002:slipway_3[collapsed=true]␍␛[0K#3 [build 2/2] COPY app /
        #3 CACHED
        ␛[0Ksection_end:1700000002:slipway_3␍␛[0K
        #3 DONE 1.9s
        ␛[0Ksection_start:1700000003:slipway_4[collapsed=true]␍␛[0K#4 [x 1/1] RUN sleep 5
        #4 0.100 sleeping
        ␛[0Ksection_end:1700000004:slipway_4␍␛[0K
        ␛[0Ksection_start:1700000004:slipway_5[collapsed=true]␍␛[0K#5 [y 1/1] RUN echo hi
        #5 1.300 hi
        ␛[0Ksection_end:1700000004:slipway_5␍␛[0K
        #5 DONE 1.5s
        ␛[0Ksection_start:1700000004:slipway_4_2[collapsed=true]␍␛[0K#4 [x 1/1] RUN sleep 5 (continued)
        #4 1.600 woke
        ␛[0Ksection_end:1700000005:slipway_4_2␍␛[0K
        #4 ERROR: exit code 1
        ");
    }

    #[test]
    fn waiting_lines_are_printed_when_the_renderer_ends() {
        let events = vec![
            (0, start(1, "a")),
            (0, start(2, "b")),
            (100, log(1, "one")),
            (200, log(2, "two")),
            (300, log(1, "three")),
        ];
        let out = render(Folding::GitHub, events.clone());
        check_groups(&out, "::group::", "::endgroup::", &events);
        assert!(out.ends_with("::group::#2 b\n#2 0.200 two\n::endgroup::\n"), "{out}");
    }

    #[test]
    fn too_much_waiting_output_switches_groups() {
        let mut events = vec![(0, start(1, "a")), (0, start(2, "b"))];
        let line = "x".repeat(999);
        for i in 0..(MAX_WAITING_BYTES / 1000 + 10) as u64 {
            events.push((i % 500, log(1, "tick")));
            events.push((i % 500, log(2, &line)));
        }
        let out = render(Folding::GitHub, events);
        let first_switch = out.find("::group::#2").unwrap();
        // The switch came long before the end: task 1 continued afterwards.
        assert!(out[first_switch..].contains("::group::#1 a (continued)"), "{}", &out[..200]);
        assert_eq!(out.matches(&line).count(), MAX_WAITING_BYTES / 1000 + 10);
    }

    /// When a group closes, tasks that already ended get theirs before a running one takes over.
    #[test]
    fn finished_tasks_are_printed_before_running_ones() {
        let events = vec![
            (0, start(1, "a")),
            (0, start(2, "b")),
            (0, start(3, "c")),
            (100, log(2, "b runs")),
            (200, log(3, "c ran")),
            (300, done(3, 300)),
            (400, log(1, "a runs")),
            (500, done(1, 500)),
            (600, done(2, 600)),
        ];
        let out = render(Folding::GitHub, events.clone());
        check_groups(&out, "::group::", "::endgroup::", &events);
        insta::assert_snapshot!(out, @r"
        ::group::#3 c
        #3 0.200 c ran
        ::endgroup::
        #3 DONE 0.3s
        ::group::#2 b
        #2 0.100 b runs
        ::endgroup::
        ::group::#1 a
        #1 0.400 a runs
        ::endgroup::
        #1 DONE 0.5s
        #2 DONE 0.6s
        ");
    }
}
