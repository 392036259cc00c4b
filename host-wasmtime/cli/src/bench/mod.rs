//! Benchmarks: synor against its peers, measured in the same run on the same input and reported
//! as ratios. Progress goes to stderr; results are returned as serializable reports.

pub mod e2e;
pub mod node;
#[cfg(feature = "peer-cosmwasm")]
pub mod peer_cosmwasm;
pub mod sched;
pub mod spec;
pub mod store;
pub mod tiers;

use std::time::Instant;

/// The median of `values` (NaN when there are none).
pub fn median(values: Vec<f64>) -> f64 {
    quartiles(values)[1]
}

/// The lower quartile, median and upper quartile of `values`: the values at a quarter, half
/// and three quarters of their sorted order (NaN when there are none).
pub fn quartiles(mut values: Vec<f64>) -> [f64; 3] {
    values.sort_by(f64::total_cmp);
    let at = |i: usize| values.get(i).copied().unwrap_or(f64::NAN);
    let n = values.len();
    [at(n / 4), at(n / 2), at(3 * n / 4)]
}

/// The median of `reps` timings of `f`, in seconds.
pub fn median_secs(reps: usize, mut f: impl FnMut()) -> f64 {
    median(
        (0..reps.max(1))
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

/// Runs `a` and `b` `reps` times each, in pairs whose order alternates, so that drift and
/// bursts on a shared machine hit both runs of a pair alike; returns the median of the pairs'
/// ratios `a / b`, and the medians of `a` and of `b`.
///
/// # Errors
/// The first error of `a` or `b`.
pub fn paired<E>(
    reps: usize,
    mut a: impl FnMut() -> Result<f64, E>,
    mut b: impl FnMut() -> Result<f64, E>,
) -> Result<(f64, f64, f64), E> {
    let (mut ratios, mut xs, mut ys) = (Vec::new(), Vec::new(), Vec::new());
    for rep in 0..reps.max(1) {
        let (x, y) = pair(rep % 2 == 0, &mut a, &mut b)?;
        ratios.push(x / y);
        xs.push(x);
        ys.push(y);
    }
    Ok((median(ratios), median(xs), median(ys)))
}

/// Runs `a` and `b` once each, `a` first if `a_first`; returns their results, `a`'s first.
///
/// # Errors
/// The first error of `a` or `b`.
pub fn pair<A, B, E>(
    a_first: bool,
    a: impl FnOnce() -> Result<A, E>,
    b: impl FnOnce() -> Result<B, E>,
) -> Result<(A, B), E> {
    if a_first {
        let x = a()?;
        Ok((x, b()?))
    } else {
        let y = b()?;
        Ok((a()?, y))
    }
}

/// A progress bar on stderr, hidden when `visible` is false.
pub fn progress(len: u64, what: &str, visible: bool) -> indicatif::ProgressBar {
    if !visible {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr(),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} {elapsed}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

#[cfg(test)]
mod tests {
    use super::{median, quartiles};

    #[test]
    fn quartiles_are_the_values_at_a_quarter_half_and_three_quarters() {
        let values: Vec<f64> = [9.0, 1.0, 5.0, 3.0, 7.0, 2.0, 8.0, 4.0, 6.0, 10.0, 11.0].into();
        assert_eq!(quartiles(values.clone()), [3.0, 6.0, 9.0]);
        assert_eq!(median(values), 6.0);
        assert_eq!(quartiles(vec![4.0]), [4.0; 3]);
        assert!(quartiles(Vec::new()).iter().all(|q| q.is_nan()));
    }
}
