//! Steps 2 to 6 of one tick: see the module documentation of `detect.rs`.

use super::*;

impl Detector {
    /// One tick: the current value of every metric this host has (names like
    /// "cpu.total_pct" or "disk.busy_pct:sda"). Metrics may appear, disappear or skip ticks;
    /// non-finite values count as missing. The first value wins if a name repeats in a tick.
    pub fn tick(&mut self, ts_ms: i64, values: &[(&str, f64)]) -> Result<Tick, ModelError> {
        let warming = self.begin_tick(ts_ms);
        self.observe(values, warming);
        if warming {
            return self.warming_tick(ts_ms);
        }
        let Some(calib) = self.calib.as_ref() else {
            return Ok(Tick::quiet(Vec::new()));
        };
        let (model_threshold, score_threshold) = (calib.model_threshold, calib.score_threshold);
        // step 2, then step 3: the combined ratio of this tick
        let window = self.window_ratio(model_threshold)?;
        let pca = self.pca_ratio();
        let spike = self.spike_ratio();
        let mut combined = window.max(pca.ratio);
        if !combined.is_finite() {
            combined = 0.0;
        }
        // step 4: smoothing over the last `smooth_ticks` ticks, then the calibrated threshold
        self.last_combined = combined;
        let rank = self.rank.push(combined);
        self.smooth.push(combined);
        let recent = self.smooth.values();
        let mean = recent.iter().sum::<f64>() / recent.len().max(1) as f64;
        let mut ratio = mean / score_threshold;
        self.track_elevated(ratio);
        let mut fixed = self.alarm_quantile.push_ratio(combined);
        if let Some(s) = spike {
            fixed = Some(fixed.map_or(s, |f| f.max(s)));
        }
        if let Some(r) = fixed {
            ratio = r;
        }
        if !self.alarm_scales.is_empty() {
            let adaptive = self
                .alarm_scales
                .iter_mut()
                .map(|s| s.push(combined))
                .fold(0.0, f64::max);
            ratio = fixed.map_or(adaptive, |f| f.max(adaptive));
        }
        if !ratio.is_finite() {
            ratio = 0.0;
        }
        let mut rank = rank;
        if let Some(single) = self.single_ratio() {
            // one series: its own evidence is the alarm's and the ranking score's (the
            // multivariate score does not rank one series' anomalies: models/README.md,
            // "A score that ranks one series")
            ratio = single;
            let r = self.single_rank(single);
            rank = Some(r / (1.0 + r));
        }
        let top = self.metric_ratios();
        // step 5: events
        let sensitivity = self.config.sensitivity.max(0.0);
        let mut changes = Vec::new();
        if self.config.per_family {
            ratio = self.family_ratios(&pca, score_threshold, sensitivity);
            for slot in 0..self.families.len() {
                let r_eff = self.families[slot].ratio * sensitivity;
                if let Some(c) = self.advance_event(slot, ts_ms, r_eff) {
                    changes.push(c);
                }
            }
        } else {
            self.families[Family::Host.index()].ratio = ratio;
            if let Some(c) = self.supersede_for_extreme(ts_ms) {
                changes.push(c);
            }
            if let Some(c) = self.advance_event(Family::Host.index(), ts_ms, ratio * sensitivity) {
                changes.push(c);
            }
        }
        let r_eff = ratio * sensitivity;
        let score = r_eff / (1.0 + r_eff);
        Ok(Tick {
            score,
            raw_score: ratio,
            rank: rank.unwrap_or(score),
            alarm: self
                .families
                .iter()
                .any(|f| f.event.as_ref().is_some_and(OpenEvent::firing)),
            top_metric: top.map(|i| self.metrics[i].name.clone()),
            changes,
            run_started: std::mem::take(&mut self.run_started),
        })
    }

    /// The tick's clock and scratch state; true while warming up.
    fn begin_tick(&mut self, ts_ms: i64) -> bool {
        self.ticks += 1;
        if let Some(prev) = self.last_ts_ms.filter(|&p| ts_ms > p) {
            self.tick_ms = ts_ms - prev;
        }
        self.last_ts_ms = Some(ts_ms);
        let warming = self.calib.is_none();
        if warming {
            self.warm_rows.push(vec![f64::NAN; self.metrics.len()]);
        }
        self.batch.clear();
        self.batch_metrics.clear();
        self.touched.clear();
        let pca_cols = self
            .calib
            .as_ref()
            .and_then(|c| c.pca.as_ref())
            .map_or(0, |p| p.metrics.len());
        self.pca.z.clear();
        self.pca.z.resize(pca_cols, f64::NAN);
        let relearn = self.config.relearn_after_ticks;
        self.quiet_now.clear();
        self.quiet_now.extend(
            self.config
                .quiet_windows
                .iter()
                .map(|w| w.when().contains(ts_ms)),
        );
        self.slot_learning.clear();
        self.slot_learning
            .extend(self.families.iter().map(|st| st.learning(relearn)));
        if !warming {
            self.rebase_relearnt();
        }
        warming
    }

    /// A firing event that has lasted `relearn_after_ticks` is a new normal, not an incident.
    /// Where baselines learn all along (`freeze_baselines` off, the 5-minute profile), the
    /// rings of its metrics already hold the values since it opened: for each metric whose
    /// level moved out of its expected range, the older values are moved to that new level ([`Ring::recentre`]) and the baseline is recomputed at once, so the host
    /// stops alarming on the new level now instead of once it fills half the window (days in
    /// the 5-minute profile), and keeps the spread its long history taught it.
    /// Frozen baselines start learning at that age instead (see [`Learning::Relearn`]).
    fn rebase_relearnt(&mut self) {
        let relearn = self.config.relearn_after_ticks;
        if relearn == 0 || self.config.freeze_baselines {
            return;
        }
        // a single series relearns on its event: its evidence is its own (`single.rs`)
        if self.config.relearn_on_evidence && self.single.is_none() {
            let t = self.ticks;
            if let Some((since, last, false)) = self.elevated {
                let age = (t - since) as usize;
                if last + 1 == t && age >= relearn {
                    self.elevated = Some((since, last, true));
                    self.rebase_metrics(None, age);
                    // what is firing now ends on the new level: its close says so, however
                    // young the event itself is
                    for st in &mut self.families {
                        if let Some(open) = st.event.as_mut().filter(|e| e.firing()) {
                            open.rebased = true;
                        }
                    }
                }
            }
            return;
        }
        for slot in 0..self.families.len() {
            let Some(open) = self.families[slot].event.as_mut() else {
                continue;
            };
            if open.rebased || !open.firing() || open.age < relearn {
                continue;
            }
            open.rebased = true;
            let keep = open.age;
            let only = self.config.per_family.then_some(slot);
            self.rebase_metrics(only, keep);
        }
    }

    /// `relearn_on_evidence`: follows the run of ticks whose smoothed evidence is over its
    /// fixed warm-up threshold (`ratio` = that mean over the threshold), gaps up to
    /// `merge_ticks` (and `clear_ticks`) bridged as an event's hold would.
    fn track_elevated(&mut self, ratio: f64) {
        if !self.config.relearn_on_evidence {
            return;
        }
        let t = self.ticks;
        let gap = (self.config.merge_ticks + self.config.clear_ticks.max(1)) as u64;
        self.elevated = match self.elevated {
            Some((since, _, done)) if ratio > 1.0 => Some((since, t, done)),
            None if ratio > 1.0 => Some((t, t, false)),
            Some(run) if t - run.1 <= gap => Some(run),
            _ => None,
        };
    }

    /// Moves the older values of the metrics (of event slot `only`, or all) whose level moved
    /// or whose spread widened over their last `keep` values to that new level, and recomputes
    /// their baselines.
    fn rebase_metrics(&mut self, only: Option<usize>, keep: usize) {
        for m in &mut self.metrics {
            if only.is_some_and(|slot| m.slot_idx != slot) {
                continue;
            }
            // only the metrics whose level moved or whose spread widened
            let Some(moved) = m.baseline.map(|b| REBASE_MIN_MOVE * b.scale) else {
                continue;
            };
            if !m
                .ring
                .recentre(keep, REBASE_MIN_VALUES, moved, &mut self.scratch)
            {
                continue;
            }
            if let Some(b) =
                robust_baseline(m.ring.values(), &mut self.scratch, m.rel_floor, m.abs_floor)
            {
                m.baseline = Some(b);
            }
        }
    }

    /// Step 1 for every value of the tick (baselines, normalised lags, what may be evidence),
    /// and the batch of windows for the model; while warming up, the raw values are kept.
    fn observe(&mut self, values: &[(&str, f64)], warming: bool) {
        let t = self.ticks;
        let f = self.model.features();
        let metric_warmup = self.config.metric_warmup(f) as u64;
        let every = self.config.rebaseline_every_ticks.max(1) as u64;
        let gate_z = self.config.current_gate_z;
        let gate_skip = (gate_z - 1.0).max(0.0);
        for (pos, &(name, v)) in values.iter().enumerate() {
            if !v.is_finite() {
                continue;
            }
            let guess = self
                .order
                .get(pos)
                .copied()
                .filter(|&i| self.metrics[i].name == name);
            let idx = match guess.or_else(|| self.index.get(name).copied()) {
                Some(i) => i,
                None => {
                    let i = self.metrics.len();
                    let mut m = MetricState::new(name.to_string(), i, &self.config, f);
                    m.slot_idx = self.slot_of(&m.name, m.family);
                    self.metrics.push(m);
                    self.index.insert(name.to_string(), i);
                    i
                }
            };
            if pos < self.order.len() {
                self.order[pos] = idx;
            } else if pos == self.order.len() {
                self.order.push(idx);
            }
            let m = &mut self.metrics[idx];
            if m.ignored || m.seen_tick == t {
                continue;
            }
            m.seen_tick = t;
            m.last_value = v;
            m.muted = false;
            // an alarming family's values stay out of its baselines (never learn an incident);
            // short bursts that stay under the threshold are the host's normal and are learnt
            // (the CPU time an I/O saturation drives is frozen with the I/O it belongs to)
            let learning = |i: usize| {
                self.slot_learning
                    .get(i)
                    .copied()
                    .unwrap_or(Learning::Normal)
            };
            let frozen = learning(m.slot_idx) == Learning::Frozen
                || (m.io_driven && learning(Family::DiskIo.index()) == Learning::Frozen);
            let learn = !self.config.freeze_baselines || warming || !frozen;
            if learn {
                m.ring.push(v);
            }
            m.observed += 1;
            if warming {
                if let Some(row) = self.warm_rows.last_mut() {
                    if row.len() <= idx {
                        row.resize(idx + 1, f64::NAN);
                    }
                    row[idx] = v;
                }
                continue;
            }
            let rebase = match m.baseline {
                None => m.observed >= metric_warmup,
                Some(_) => (m.observed + m.slot as u64).is_multiple_of(every),
            };
            if rebase {
                if let Some(b) =
                    robust_baseline(m.ring.values(), &mut self.scratch, m.rel_floor, m.abs_floor)
                {
                    m.baseline = Some(b);
                }
            }
            let Some(b) = m.baseline else { continue };
            let z = b.z(v);
            m.push_z(z as f32);
            m.muted = m.inside_band(v, z)
                || m.quiet
                    .iter()
                    .any(|&w| self.quiet_now.get(w).copied().unwrap_or(false));
            m.ratio = 0.0;
            m.sustain_ratio = 0.0;
            if self.config.sustain_ticks > 0 {
                m.sustain.push(z);
                let w = m.sustain.values();
                if let (Some(thr), true) = (m.sustain_thr, w.len() >= self.config.sustain_ticks) {
                    let mean = w.iter().sum::<f64>() / w.len() as f64;
                    m.sustain_ratio = symptom(m.direction, mean) / thr;
                }
            }
            if let Some(col) = m.pca_col {
                // a metric that is not evidence enters the host PCA at its normal value, so its
                // move breaks no relation either
                self.pca.z[col] = if m.muted {
                    0.0
                } else {
                    b.pca_z(v, self.config.pca_std_scale)
                };
            }
            // a window whose current value is inside the gate scores exactly 0: no model call
            let inside_gate = (gate_z > 0.0 && f64::from(m.lags[0]).abs() <= gate_skip)
                || m.below_normal()
                || m.muted;
            if m.filled >= f && f > 0 && !inside_gate {
                self.batch.extend_from_slice(&m.lags);
                self.batch_metrics.push(idx);
            }
            self.touched.push(idx);
        }
    }

    /// A warm-up tick: calibrates at its end; events left open by a model swap close now.
    fn warming_tick(&mut self, ts_ms: i64) -> Result<Tick, ModelError> {
        if self.ticks as usize >= self.config.warmup_ticks {
            self.calibrate()?;
        }
        if self.calib.is_some() {
            self.calibrated_ms = Some(ts_ms);
            self.restored = false;
        }
        // events left open by a model swap close now
        let mut changes = Vec::new();
        for st in &mut self.families {
            st.over_run = 0;
            if let Some(mut open) = st.event.take() {
                // a held event ended where it recovered
                let end = open.held.map_or(ts_ms, |(_, recovered_ms, _)| recovered_ms);
                open.anomaly.ended_ms = Some(end);
                open.anomaly.updated_ms = end;
                open.anomaly.close_reason =
                    Some("model replaced: the detector is warming up again".into());
                changes.push(EventChange {
                    kind: EventKind::Closed,
                    event: open.anomaly,
                });
            }
        }
        Ok(Tick::quiet(changes))
    }

    /// Step 2: the window model, one batched call for every metric of the host; each metric's
    /// ratio, and the largest.
    fn window_ratio(&mut self, model_threshold: f64) -> Result<f64, ModelError> {
        let f = self.model.features();
        let gate_z = self.config.current_gate_z;
        let n = self.batch_metrics.len();
        let mut ratio = 0.0f64;
        if n > 0 {
            let scores = self.model.score(&self.batch, n)?;
            for (row, (&idx, &s)) in self.batch_metrics.iter().zip(&scores.score).enumerate() {
                let g = gate(self.batch[row * f], gate_z);
                let r = g * f64::from(s).max(0.0) / model_threshold;
                let r = if r.is_finite() { r } else { 0.0 };
                self.metrics[idx].ratio = r;
                ratio = ratio.max(r);
            }
        }
        Ok(ratio)
    }

    /// Step 3: the host PCA over the metrics seen this tick; its squared error is also split
    /// by event state (`slot_spe`), and each metric's residual raises its ratio.
    fn pca_ratio(&mut self) -> PcaPart {
        let t = self.ticks;
        let Self {
            calib,
            metrics,
            pca: scratch,
            slot_spe,
            families,
            ..
        } = self;
        slot_spe.clear();
        slot_spe.resize(families.len(), 0.0);
        let mut part = PcaPart {
            ratio: 0.0,
            threshold: f64::INFINITY,
            io_cpu_spe: 0.0,
        };
        let Some((pca, thr)) = calib
            .as_ref()
            .and_then(|c| c.pca.as_ref().map(|p| (p, c.pca_threshold)))
        else {
            return part;
        };
        let Some(spe) = scratch.error(pca) else {
            return part;
        };
        part.threshold = thr;
        // the error of metrics that are not evidence now (floors, quiet windows)
        let mut muted_spe = 0.0f64;
        for (col, &idx) in pca.metrics.iter().enumerate() {
            let sq = scratch.res[col] * scratch.res[col];
            let m = &mut metrics[idx];
            if m.seen_tick == t && m.muted {
                muted_spe += sq;
            } else if m.seen_tick == t && !m.below_normal() {
                m.ratio = m.ratio.max(sq / thr);
                slot_spe[m.slot_idx] += sq;
                if m.io_driven {
                    part.io_cpu_spe += sq;
                }
            }
        }
        part.ratio = (spe - muted_spe).max(0.0) / thr;
        part
    }

    /// `spike_alarm`: this tick's error against the whole-warm-up host PCA over its
    /// threshold, the error of metrics that are not evidence now left out (None when off).
    fn spike_ratio(&mut self) -> Option<f64> {
        let t = self.ticks;
        let Self {
            calib,
            metrics,
            pca: scratch,
            ..
        } = self;
        let (pca, thr) = calib.as_ref()?.spike_pca.as_ref()?;
        let Some(spe) = scratch.error(pca) else {
            return Some(0.0);
        };
        let muted: f64 = pca
            .metrics
            .iter()
            .enumerate()
            .filter(|(_, &i)| metrics[i].seen_tick == t && metrics[i].muted)
            .map(|(col, _)| scratch.res[col] * scratch.res[col])
            .sum();
        let r = (spe - muted).max(0.0) / thr;
        Some(if r.is_finite() { r } else { 0.0 })
    }

    /// Each metric's ratio beyond the models (a lasting deviation, a saturated resource), and
    /// the metric that contributes most this tick.
    fn metric_ratios(&mut self) -> Option<usize> {
        // a lasting deviation counts as much as the window model's view of it
        for &idx in &self.touched {
            let m = &mut self.metrics[idx];
            if m.sustain_ratio > 0.0 && !m.below_normal() && !m.muted {
                m.ratio = m.ratio.max(m.sustain_ratio);
            }
        }
        // a saturated bounded resource is anomalous whatever its baseline says
        let sat = self.config.saturation_ratio;
        if sat > 0.0 {
            for &idx in &self.touched {
                let m = &mut self.metrics[idx];
                if !m.muted && m.saturation.is_some_and(|level| m.last_value >= level) {
                    m.ratio = m.ratio.max(sat);
                }
            }
        }
        let mut top: Option<usize> = None;
        for &idx in &self.touched {
            let r = self.metrics[idx].ratio;
            let better = match top {
                None => true,
                Some(b) => r > self.metrics[b].ratio,
            };
            if r > 0.0 && better {
                top = Some(idx);
            }
        }
        top
    }

    /// Step 5's ratio of each event state (`families[..].ratio`); returns the host's, the
    /// largest of them.
    fn family_ratios(&mut self, pca: &PcaPart, score_threshold: f64, sensitivity: f64) -> f64 {
        let gate_z = self.config.current_gate_z;
        let slots = self.families.len();
        let pca_thr = pca.threshold;
        let io_cpu_spe = pca.io_cpu_spe;
        // each family: the largest of its metrics' ratios and its share of the PCA error,
        // counted only for metrics whose value is outside the current-value gate now (a
        // broken relation shows in the residuals of normal-valued metrics too; those belong
        // to the family that actually moved)
        for st in &mut self.families {
            st.ratio = 0.0;
        }
        self.slot_moved.clear();
        self.slot_moved.resize(slots, false);
        // the CPU family without its I/O-driven metrics
        let (mut cpu_rest, mut cpu_rest_moved) = (0.0f64, false);
        // a disk's rates that moved, counted at the end if that disk is loaded (its busy time,
        // or the host's I/O pressure or wait, is up), or if nothing on this host says
        let mut rates: Vec<(usize, f64)> = Vec::new();
        let mut busy: Vec<usize> = Vec::new();
        let (mut load_seen, mut host_loaded) = (false, false);
        for &idx in &self.touched {
            let m = &self.metrics[idx];
            load_seen |= m.disk_load;
            if m.muted || !m.outside_gate(gate_z) {
                continue;
            }
            let r = m.ratio / score_threshold;
            if m.disk_rate {
                rates.push((idx, r));
                continue;
            }
            if m.disk_load && m.lags.first().is_some_and(|&z| z > 0.0) {
                match device_of(&m.name) {
                    Some(_) => busy.push(idx),
                    None => host_loaded = true,
                }
            }
            self.slot_moved[m.slot_idx] = true;
            if m.family == Family::Cpu && !m.io_driven {
                cpu_rest = cpu_rest.max(r);
                cpu_rest_moved = true;
            }
            let st = &mut self.families[m.slot_idx];
            st.ratio = st.ratio.max(r);
        }
        for &(idx, r) in &rates {
            let device = device_of(&self.metrics[idx].name);
            let loaded = !load_seen
                || host_loaded
                || busy
                    .iter()
                    .any(|&j| device_of(&self.metrics[j].name) == device);
            if loaded {
                let slot = self.metrics[idx].slot_idx;
                self.slot_moved[slot] = true;
                self.families[slot].ratio = self.families[slot].ratio.max(r);
            }
        }
        let spe_ratio = |moved: bool, spe: f64| {
            let r = if moved {
                spe / pca_thr / score_threshold
            } else {
                0.0
            };
            if r.is_finite() {
                r
            } else {
                0.0
            }
        };
        let mut host = 0.0f64;
        for (i, st) in self.families.iter_mut().enumerate() {
            let r = st
                .ratio
                .max(spe_ratio(self.slot_moved[i], self.slot_spe[i]));
            st.ratio = if r.is_finite() { r } else { 0.0 };
        }
        // while disk I/O is anomalous, what it drives in the CPU family is its symptom
        let io = &self.families[Family::DiskIo.index()];
        self.io_episode = io.event.as_ref().is_some_and(OpenEvent::firing)
            || io.ratio * sensitivity > RISING_RATIO;
        if self.io_episode {
            let cpu_spe = (self.slot_spe[Family::Cpu.index()] - io_cpu_spe).max(0.0);
            self.families[Family::Cpu.index()].ratio =
                cpu_rest.max(spe_ratio(cpu_rest_moved, cpu_spe));
        }
        for st in &self.families {
            host = host.max(st.ratio);
        }
        host
    }
}

/// What step 3 gives the rest of the tick.
struct PcaPart {
    /// Squared reconstruction error over its threshold, without the metrics that are not
    /// evidence now (0 without a PCA or without values).
    ratio: f64,
    /// Its threshold (infinite without a PCA).
    threshold: f64,
    /// The part of the CPU family's error that comes from [`io_driven_cpu`] metrics.
    io_cpu_spe: f64,
}

impl Tick {
    /// A tick that scores nothing (warming up, or not calibrated).
    fn quiet(changes: Vec<EventChange>) -> Self {
        Tick {
            score: 0.0,
            raw_score: 0.0,
            rank: 0.0,
            alarm: false,
            top_metric: None,
            changes,
            run_started: false,
        }
    }
}

/// The device of a metric key (`disk.busy_pct:sda` → `sda`), if it has one.
fn device_of(name: &str) -> Option<&str> {
    name.split_once(':').map(|(_, d)| d)
}
