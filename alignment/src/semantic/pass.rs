//! One pass over a set's distance rows ([`DistanceRows`]) that keeps, per item, only what the
//! scores need of its row: its first neighbours, its AP@R, its pair sums, its silhouette and its
//! same-class pairs. So the scores of a set cost one pass (two with the AUC), whether its
//! distances are held or computed in blocks, and never more than a row's worth of memory each.

use super::distance::DistanceRows;
use super::items::Items;
use super::scores::random_ranking_ap;

/// What a pass gathers.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Wanted {
    /// Neighbours kept per item (0: none).
    pub knn: usize,
    /// AP@R and its chance.
    pub map: bool,
    /// Inter/intra sums of pairs across images.
    pub sums: bool,
    /// Silhouette per item.
    pub silhouette: bool,
    /// Same-class pairs across images (`i < j`) with their distances.
    pub positives: bool,
}

/// What a pass gathered, per item in row order.
#[derive(Debug, Default)]
pub(crate) struct RowFacts {
    /// Items with a neighbour from another image, with their first `knn` neighbours.
    pub lists: Vec<(usize, Vec<usize>)>,
    /// (AP@R, its chance) of items with a same-class neighbour.
    pub aps: Vec<(f64, f64)>,
    /// [inter sum, inter count, intra sum, intra count] of items with a pair across images.
    pub sums: Vec<[f64; 4]>,
    /// scikit-learn's s_i of every item (when the classes allow one, see `pairs::silhouette`).
    pub silhouette: Vec<f64>,
    /// (distance, i, j) of same-class pairs across images, i < j.
    pub positives: Vec<(f64, u32, u32)>,
}

/// Runs one pass over `dm`, gathering `wanted`.
pub(crate) fn gather<R: DistanceRows + ?Sized>(
    dm: &R,
    items: &Items<'_>,
    wanted: Wanted,
) -> RowFacts {
    let classes = items.classes();
    let coding = wanted.silhouette.then(|| ClassCoding::new(classes));
    let mut facts = RowFacts::default();
    dm.for_each_row(&mut |i, row| {
        if wanted.knn > 0 || wanted.map {
            let order = ranked(row, items, i);
            if wanted.knn > 0 && !order.is_empty() {
                facts.lists.push((i, order.iter().take(wanted.knn).copied().collect()));
            }
            if wanted.map {
                facts.aps.extend(average_precision(&order, classes, classes[i]));
            }
        }
        if wanted.sums {
            facts.sums.extend(pair_sums(row, items, i));
        }
        if let Some(c) = &coding {
            facts.silhouette.push(c.silhouette(row, i));
        }
        if wanted.positives {
            for (j, &d) in row.iter().enumerate().skip(i + 1) {
                if items.apart(i, j) && classes[i] == classes[j] {
                    facts.positives.push((d, i as u32, j as u32));
                }
            }
        }
    });
    facts
}

/// The neighbours of item `i` from its row: items from other images, nearest first, ties by
/// index.
pub(crate) fn ranked(row: &[f64], items: &Items<'_>, i: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..row.len()).filter(|&j| items.apart(i, j)).collect();
    // A stable sort of ascending indices: equal distances stay in index order.
    order.sort_by(|&a, &b| row[a].total_cmp(&row[b]));
    order
}

/// AP@R of one ranking and its chance, or `None` when no neighbour shares the class.
fn average_precision(order: &[usize], classes: &[usize], class: usize) -> Option<(f64, f64)> {
    let r = order.iter().filter(|&&j| classes[j] == class).count();
    if r == 0 {
        return None;
    }
    let (mut hits, mut sum) = (0usize, 0.0);
    for (k, &j) in order.iter().take(r).enumerate() {
        if classes[j] == class {
            hits += 1;
            sum += hits as f64 / (k + 1) as f64;
        }
    }
    Some((sum / r as f64, random_ranking_ap(r, order.len())))
}

/// [inter sum, inter count, intra sum, intra count] of item `i`'s pairs across images, or `None`
/// without one.
fn pair_sums(row: &[f64], items: &Items<'_>, i: usize) -> Option<[f64; 4]> {
    let classes = items.classes();
    let mut s = [0.0; 4];
    let mut any = false;
    for (j, &d) in row.iter().enumerate() {
        if items.apart(i, j) {
            any = true;
            let k = if classes[i] == classes[j] { 2 } else { 0 };
            s[k] += d;
            s[k + 1] += 1.0;
        }
    }
    any.then_some(s)
}

/// Classes coded 0..K in sorted order, with their sizes (the silhouette's bookkeeping).
pub(crate) struct ClassCoding {
    pub code: Vec<usize>,
    pub size: Vec<f64>,
}

impl ClassCoding {
    pub(crate) fn new(classes: &[usize]) -> Self {
        let mut labels = classes.to_vec();
        labels.sort_unstable();
        labels.dedup();
        let code: Vec<usize> =
            classes.iter().map(|c| labels.binary_search(c).unwrap_or(0)).collect();
        let mut size = vec![0.0; labels.len()];
        code.iter().for_each(|&c| size[c] += 1.0);
        Self { code, size }
    }

    /// s_i = (b_i − a_i) / max(a_i, b_i), 0 in a class of one (scikit-learn's rule).
    fn silhouette(&self, row: &[f64], i: usize) -> f64 {
        let mut sum = vec![0.0; self.size.len()];
        row.iter().zip(&self.code).for_each(|(d, &c)| sum[c] += d);
        let own = self.code[i];
        if self.size[own] <= 1.0 {
            return 0.0;
        }
        let a = sum[own] / (self.size[own] - 1.0);
        let b = (0..self.size.len())
            .filter(|&c| c != own)
            .map(|c| sum[c] / self.size[c])
            .fold(f64::INFINITY, f64::min);
        let s = (b - a) / a.max(b);
        if s.is_nan() {
            0.0
        } else {
            s
        }
    }
}
