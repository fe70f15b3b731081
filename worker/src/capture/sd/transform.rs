//! `capture.image.transforms` applied to an image and its object mask alike (science-2.md §L):
//! the image resampled bilinearly, the mask by nearest neighbour so it stays binary, both filled
//! with 0 where the transform leaves the frame. Quarter turns, flips and shifts move pixels
//! exactly (no resampling), so `rot90⁴` and `flip²` are the identity bit for bit.

use common::spec::ImageTransform;
use image::imageops::{self, FilterType};
use image::{ImageBuffer, Pixel};

/// How a transform resamples: bilinear for images, nearest for masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resample {
    Bilinear,
    Nearest,
}

type Buffer<P> = ImageBuffer<P, Vec<u8>>;

/// `image` through `t`, the same size as `image`. `centre` (x, y in pixels) is the object's box
/// centre, where `crop` centres its window (the image centre when there is no mask).
pub(crate) fn apply<P: Pixel<Subpixel = u8> + 'static>(
    image: &Buffer<P>,
    t: ImageTransform,
    centre: (f64, f64),
    resample: Resample,
) -> Buffer<P> {
    let (w, h) = image.dimensions();
    let filter = match resample {
        Resample::Bilinear => FilterType::Triangle,
        Resample::Nearest => FilterType::Nearest,
    };
    match t {
        ImageTransform::Rot90 => imageops::rotate270(image), // counter-clockwise
        ImageTransform::Rot180 => imageops::rotate180(image),
        ImageTransform::Rot270 => imageops::rotate90(image),
        ImageTransform::FlipH => imageops::flip_horizontal(image),
        ImageTransform::FlipV => imageops::flip_vertical(image),
        ImageTransform::Rotate(deg) => rotate(image, f64::from(deg), resample),
        ImageTransform::Shift(dx, dy) => shift(image, i64::from(dx), i64::from(dy)),
        ImageTransform::Scale(percent) => {
            let s = f64::from(percent) / 100.0;
            let (sw, sh) = (scaled(w, s), scaled(h, s));
            let resized = imageops::resize(image, sw, sh, filter);
            // Centre the resized image in the frame: a crop when larger, zero padding when smaller.
            let dx = (i64::from(w) - i64::from(sw)) / 2;
            let dy = (i64::from(h) - i64::from(sh)) / 2;
            let mut out = Buffer::<P>::new(w, h);
            paste(&mut out, &resized, dx, dy);
            out
        }
        ImageTransform::Pad(px) | ImageTransform::PadReflect(px) => {
            let reflect = matches!(t, ImageTransform::PadReflect(_));
            let padded = pad(image, px, reflect);
            imageops::resize(&padded, w, h, filter)
        }
        ImageTransform::Crop(percent) => {
            let keep = f64::from(percent) / 100.0;
            let (cw, ch) = (scaled(w, keep).min(w), scaled(h, keep).min(h));
            let left = (centre.0 - f64::from(cw) / 2.0).round().clamp(0.0, f64::from(w - cw));
            let top = (centre.1 - f64::from(ch) / 2.0).round().clamp(0.0, f64::from(h - ch));
            let window = imageops::crop_imm(image, left as u32, top as u32, cw, ch).to_image();
            imageops::resize(&window, w, h, filter)
        }
    }
}

/// The centre of the non-zero pixels' bounding box of a mask, or of the frame if it is empty.
pub(crate) fn box_centre(mask: &image::GrayImage) -> (f64, f64) {
    let (w, h) = mask.dimensions();
    let mut bounds: Option<(u32, u32, u32, u32)> = None;
    for (x, y, p) in mask.enumerate_pixels() {
        if p.0[0] > 0 {
            let b = bounds.get_or_insert((x, y, x, y));
            *b = (b.0.min(x), b.1.min(y), b.2.max(x), b.3.max(y));
        }
    }
    match bounds {
        Some((x0, y0, x1, y1)) => (f64::from(x0 + x1 + 1) / 2.0, f64::from(y0 + y1 + 1) / 2.0),
        None => (f64::from(w) / 2.0, f64::from(h) / 2.0),
    }
}

fn scaled(side: u32, s: f64) -> u32 {
    ((f64::from(side) * s).round() as u32).max(1)
}

/// Copies `src` into `dst` with its top-left corner at (dx, dy); what falls outside is dropped.
fn paste<P: Pixel<Subpixel = u8>>(dst: &mut Buffer<P>, src: &Buffer<P>, dx: i64, dy: i64) {
    let (w, h) = (i64::from(dst.width()), i64::from(dst.height()));
    for (x, y, p) in src.enumerate_pixels() {
        let (tx, ty) = (i64::from(x) + dx, i64::from(y) + dy);
        if (0..w).contains(&tx) && (0..h).contains(&ty) {
            dst.put_pixel(tx as u32, ty as u32, *p);
        }
    }
}

fn shift<P: Pixel<Subpixel = u8>>(image: &Buffer<P>, dx: i64, dy: i64) -> Buffer<P> {
    let mut out = Buffer::<P>::new(image.width(), image.height());
    paste(&mut out, image, dx, dy);
    out
}

/// `image` with `px` pixels added on every side: zeros, or the image mirrored at its edge
/// (numpy's `reflect`, the edge pixel not repeated).
fn pad<P: Pixel<Subpixel = u8>>(image: &Buffer<P>, px: u32, reflect: bool) -> Buffer<P> {
    let (w, h) = image.dimensions();
    let mut out = Buffer::<P>::new(w + 2 * px, h + 2 * px);
    let mirror = |v: i64, n: i64| -> Option<u32> {
        if n == 1 {
            return Some(0);
        }
        let period = 2 * (n - 1);
        let m = v.rem_euclid(period);
        Some(if m < n { m } else { period - m } as u32)
    };
    for y in 0..out.height() {
        for x in 0..out.width() {
            let (sx, sy) = (i64::from(x) - i64::from(px), i64::from(y) - i64::from(px));
            let inside = (0..i64::from(w)).contains(&sx) && (0..i64::from(h)).contains(&sy);
            let source = if inside {
                Some((sx as u32, sy as u32))
            } else if reflect {
                mirror(sx, i64::from(w)).zip(mirror(sy, i64::from(h)))
            } else {
                None
            };
            if let Some((sx, sy)) = source {
                out.put_pixel(x, y, *image.get_pixel(sx, sy));
            }
        }
    }
    out
}

/// Rotation by `deg` counter-clockwise about the frame's centre, by inverse mapping; pixels
/// whose source falls outside the frame are 0.
fn rotate<P: Pixel<Subpixel = u8>>(image: &Buffer<P>, deg: f64, resample: Resample) -> Buffer<P> {
    let (w, h) = image.dimensions();
    let (cx, cy) = (f64::from(w) / 2.0, f64::from(h) / 2.0);
    let (sin, cos) = deg.to_radians().sin_cos();
    let channels = usize::from(P::CHANNEL_COUNT);
    let mut out = Buffer::<P>::new(w, h);
    for (x, y, p) in out.enumerate_pixels_mut() {
        // Pixel centres; counter-clockwise on screen (y down) is the inverse map below.
        let (u, v) = (f64::from(x) + 0.5 - cx, f64::from(y) + 0.5 - cy);
        let sx = cos * u - sin * v + cx - 0.5;
        let sy = sin * u + cos * v + cy - 0.5;
        let channels_out = p.channels_mut();
        for (c, value) in channels_out.iter_mut().enumerate().take(channels) {
            *value = match resample {
                Resample::Nearest => sample_nearest(image, sx, sy, c),
                Resample::Bilinear => sample_bilinear(image, sx, sy, c),
            };
        }
    }
    out
}

fn at<P: Pixel<Subpixel = u8>>(image: &Buffer<P>, x: i64, y: i64, c: usize) -> f64 {
    let (w, h) = (i64::from(image.width()), i64::from(image.height()));
    if (0..w).contains(&x) && (0..h).contains(&y) {
        f64::from(image.get_pixel(x as u32, y as u32).channels()[c])
    } else {
        0.0
    }
}

fn sample_nearest<P: Pixel<Subpixel = u8>>(image: &Buffer<P>, x: f64, y: f64, c: usize) -> u8 {
    at(image, x.round() as i64, y.round() as i64, c) as u8
}

fn sample_bilinear<P: Pixel<Subpixel = u8>>(image: &Buffer<P>, x: f64, y: f64, c: usize) -> u8 {
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let (x0, y0) = (x0 as i64, y0 as i64);
    let top = at(image, x0, y0, c) * (1.0 - fx) + at(image, x0 + 1, y0, c) * fx;
    let bottom = at(image, x0, y0 + 1, c) * (1.0 - fx) + at(image, x0 + 1, y0 + 1, c) * fx;
    (top * (1.0 - fy) + bottom * fy).round().clamp(0.0, 255.0) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, Luma, Rgb, RgbImage};

    fn scene() -> (RgbImage, GrayImage) {
        let image = RgbImage::from_fn(32, 32, |x, y| {
            Rgb([(x * 7) as u8, (y * 5) as u8, ((x * y) % 251) as u8])
        });
        let mask = GrayImage::from_fn(32, 32, |x, y| {
            Luma([u8::from((9..19).contains(&x) && (6..20).contains(&y)) * 255])
        });
        (image, mask)
    }

    fn times<P: Pixel<Subpixel = u8> + 'static>(
        b: &Buffer<P>,
        t: ImageTransform,
        n: usize,
    ) -> Buffer<P> {
        (0..n).fold(b.clone(), |acc, _| apply(&acc, t, (16.0, 16.0), Resample::Nearest))
    }

    /// `mask_mean` (the capture's own, `reduce::mask_mean`) of an identity tap: the image itself
    /// as a `3 × 32 × 32` activation, area-averaged to `32/k × 32/k` tokens; `[3]` the area in
    /// pixels. Sums of small integers and dyadic fractions are exact in f32 in any order, so
    /// equal sets of tokens give equal descriptors bit for bit.
    fn mask_mean(image: &RgbImage, mask: &GrayImage, k: usize) -> [f32; 4] {
        use candle_core::{Device, Tensor};
        let hw = (image.height() as usize, image.width() as usize);
        let x: Vec<f32> =
            (0..3).flat_map(|c| image.pixels().map(move |p| f32::from(p.0[c]))).collect();
        let m: Vec<f32> = mask.pixels().map(|p| f32::from(u8::from(p.0[0] > 0))).collect();
        let x = Tensor::from_vec(x, (1, 3, hw.0, hw.1), &Device::Cpu).unwrap();
        let x = if k > 1 { x.avg_pool2d((k, k)).unwrap() } else { x };
        let m = Tensor::from_vec(m.clone(), (1, 1, hw.0, hw.1), &Device::Cpu).unwrap();
        let v = super::super::reduce::mask_mean(&x, &m).unwrap();
        let v = v.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let area = mask.pixels().filter(|p| p.0[0] > 0).count() as f32;
        [v[0], v[1], v[2], area]
    }

    /// rot90⁴ = rot180² = flip² = identity bit for bit on image and mask; every exact transform
    /// keeps the object's area and its `mask_mean` through the capture's code path at the pixel
    /// grid, and so does a shift that keeps the object in frame; at a 4-px token grid, quarter
    /// turns, flips and token-aligned shifts do too (the known answer: drift exactly 0 for an
    /// identity tap).
    #[test]
    fn exact_transforms_are_exact() {
        let (image, mask) = scene();
        for (t, n) in [
            (ImageTransform::Rot90, 4),
            (ImageTransform::Rot270, 4),
            (ImageTransform::Rot180, 2),
            (ImageTransform::FlipH, 2),
            (ImageTransform::FlipV, 2),
        ] {
            assert_eq!(times(&image, t, n), image, "{t}^{n} on the image");
            assert_eq!(times(&mask, t, n), mask, "{t}^{n} on the mask");
        }
        for (k, shifts) in [(1, [(8, -4), (-9, 12)]), (4, [(8, -4), (-8, 8)])] {
            let reference = mask_mean(&image, &mask, k);
            let exact = [
                ImageTransform::Rot90,
                ImageTransform::Rot180,
                ImageTransform::Rot270,
                ImageTransform::FlipH,
                ImageTransform::FlipV,
            ];
            for t in exact.into_iter().chain(shifts.map(|(x, y)| ImageTransform::Shift(x, y))) {
                let (ti, tm) = (times(&image, t, 1), times(&mask, t, 1));
                assert_eq!(mask_mean(&ti, &tm, k), reference, "{t} at {k}-px tokens");
            }
        }
        // A shift that pushes the object partly out of frame loses area.
        let out = times(&mask, ImageTransform::Shift(20, 0), 1);
        let moved = mask_mean(&times(&image, ImageTransform::Shift(20, 0), 1), &out, 1);
        assert!(moved[3] < mask_mean(&image, &mask, 1)[3]);
    }

    /// Resampling transforms keep the frame, keep masks binary, and move the object as stated:
    /// `scale:50` halves its box, `crop:50` around it doubles it, `rotate:90` equals `rot90`
    /// on a square frame.
    #[test]
    fn resampling_transforms_keep_the_frame_and_masks_binary() {
        let (image, mask) = scene();
        let centre = box_centre(&mask);
        assert_eq!(centre, (14.0, 13.0));
        let area = |m: &GrayImage| m.pixels().filter(|p| p.0[0] > 0).count();
        for t in [
            "rotate:15",
            "rotate:-45",
            "scale:50",
            "scale:150",
            "pad:8",
            "pad_reflect:8",
            "crop:50",
        ] {
            let t: ImageTransform = t.parse().unwrap();
            let ti = apply(&image, t, centre, Resample::Bilinear);
            let tm = apply(&mask, t, centre, Resample::Nearest);
            assert_eq!(ti.dimensions(), (32, 32), "{t}");
            assert!(tm.pixels().all(|p| p.0[0] == 0 || p.0[0] == 255), "{t}: mask not binary");
            assert!(area(&tm) > 0, "{t}: the object left the frame");
        }
        let a = area(&mask) as f64;
        let half = apply(&mask, ImageTransform::Scale(50), centre, Resample::Nearest);
        assert!((area(&half) as f64 / a - 0.25).abs() < 0.05);
        let crop = apply(&mask, ImageTransform::Crop(50), centre, Resample::Nearest);
        assert!((area(&crop) as f64 / a - 4.0).abs() < 0.3);
        assert_eq!(
            apply(&mask, ImageTransform::Rotate(90), centre, Resample::Nearest),
            times(&mask, ImageTransform::Rot90, 1)
        );
    }
}
