#!/usr/bin/env python3
"""Synthetic scenes with exact dense labels (science-2.md §D/data), numpy only, seeded.

Each scene: a pinhole camera looking at a ground plane with 1-3 spheres and axis-aligned boxes,
each with its own albedo, lit by one directional light. Per pixel (exactly, by ray casting):
    depth    distance along the camera axis (the far plane for the sky),
    mask     foreground = a pixel whose ray hits an object (not the plane or the sky),
    shading  Lambertian s = a + (1 - a) * max(0, n . l) (a = ambient), 1 for the sky,
and the image is albedo * shading (an exact intrinsic decomposition).

Writes, under OUT (default data/demo/scenes):
    images/{name}.png                       the RGB image (SIZE x SIZE)
    labels/{name}.mask.png                  255 = foreground
    labels/{name}.depth.npy, .shading.npy   float32 SIZE x SIZE
    objmasks/{name}.png                     the mask of the scene's most visible object
    scenes.csv                              name, objects, foreground (share of pixels)
    objects.csv                             stimulus, class (that object's shape: sphere, box)
    instances/{name}.png                    instance map: k + 1 where object k is visible, 0 else
    all_objects.csv                         every visible object: stimulus ({name}_{k}), image,
                                            mask_value (k + 1), class, area (pixels)
    videos/images/v{v}f{f}.png, instances/  4 videos of 6 frames, objects sliding on the plane
    videos/objects.csv                      as all_objects.csv plus instance (o{k}), video, frame

Usage: make_scenes.py [OUT] [--n N] [--size S] [--seed SEED]
"""
import argparse
import os
import struct
import zlib

import numpy as np

AMBIENT = 0.25
FAR = 20.0


def png(path, pixels):
    """Writes an 8-bit grayscale (H x W) or RGB (H x W x 3) PNG with zlib alone."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    h, w = pixels.shape[:2]
    colour = 2 if pixels.ndim == 3 else 0
    raw = b"".join(b"\x00" + pixels[y].tobytes() for y in range(h))

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(data)


def draw_objects(rng, lo=1):
    """Draws a scene's objects: (colour, centre, sphere?, radius or half-extents), in the order
    the renderer has always drawn them."""
    objects = []
    for _ in range(int(rng.integers(lo, 4))):
        colour = rng.uniform(0.2, 1.0, 3)
        c = np.array([rng.uniform(-1.5, 1.5), 0.0, rng.uniform(3.5, 7.0)])
        sphere = rng.random() < 0.5
        size = rng.uniform(0.5, 1.0) if sphere else rng.uniform(0.4, 0.9, 3)
        objects.append((colour, c, sphere, size))
    return objects


def render(rng, size):
    return trace(draw_objects(rng), size)


def trace(drawn, size):
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    # Camera at the origin looking down +z, slightly tilted toward the ground.
    d = np.stack([(xs + 0.5) / size * 2 - 1, -((ys + 0.5) / size * 2 - 1) - 0.3, np.full_like(xs, 1.6)], -1)
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    t_best = np.full((size, size), np.inf)
    normal = np.zeros((size, size, 3))
    albedo = np.ones((size, size, 3))
    fg = np.zeros((size, size), bool)
    owner = np.full((size, size), -1)  # which object each pixel shows
    shapes = []
    # Ground plane y = -1.
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (-1.0) / d[..., 1]
    hit = (t > 0) & np.isfinite(t)
    t_best[hit] = t[hit]
    normal[hit] = [0, 1, 0]
    checker = (np.floor(d[..., 0] * t) + np.floor(d[..., 2] * t)) % 2
    albedo[hit] = np.where(checker[hit, None] > 0, [0.55, 0.55, 0.5], [0.4, 0.42, 0.38])
    objects = len(drawn)
    for colour, c, sphere, extent in drawn:
        c = c.copy()
        shapes.append("sphere" if sphere else "box")
        if sphere:  # resting on the plane
            r = extent
            c[1] = -1 + r
            b = d @ c
            disc = b * b - (c @ c - r * r)
            with np.errstate(invalid="ignore"):
                t = b - np.sqrt(disc)
            hit = (disc > 0) & (t > 0) & (t < t_best)
            p = d[hit] * t[hit, None]
            n = (p - c) / r
        else:  # axis-aligned box resting on the plane
            half = extent
            c[1] = -1 + half[1]
            lo, hi = c - half, c + half
            with np.errstate(divide="ignore", invalid="ignore"):
                t1, t2 = lo / d, hi / d
            tmin = np.minimum(t1, t2).max(-1)
            tmax = np.maximum(t1, t2).min(-1)
            t = tmin
            hit = (tmax >= tmin) & (tmin > 0) & (tmin < t_best)
            axis = np.minimum(t1, t2).argmax(-1)
            n = np.zeros((int(hit.sum()), 3))
            n[np.arange(n.shape[0]), axis[hit]] = -np.sign(d[hit][np.arange(n.shape[0]), axis[hit]])
        t_best[hit] = t[hit]
        normal[hit] = n
        albedo[hit] = colour
        fg[hit] = True
        owner[hit] = len(shapes) - 1
    sky = ~np.isfinite(t_best)
    depth = np.where(sky, FAR, np.minimum(t_best * d[..., 2], FAR))
    light = np.array([0.4, 0.8, -0.45])
    light /= np.linalg.norm(light)
    shading = AMBIENT + (1 - AMBIENT) * np.clip(normal @ light, 0, None)
    shading[sky] = 1.0
    albedo[sky] = [0.6, 0.75, 0.95]
    image = np.clip(albedo * shading[..., None], 0, 1)
    # The object with the most visible pixels: the scene's object for the semantic lens.
    counts = [(owner == k).sum() for k in range(len(shapes))]
    main = int(np.argmax(counts))
    scene = image, fg, depth.astype(np.float32), shading.astype(np.float32), objects, owner == main, shapes[main]
    return scene, owner, shapes


def videos(out, rng, size, count=4, frames=6):
    """Short videos: two or three objects sliding on the plane at seeded constant velocities."""
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    os.makedirs(os.path.join(out, "instances"), exist_ok=True)
    rows = ["stimulus,image,mask_value,class,area,instance,video,frame"]
    for v in range(count):
        drawn = draw_objects(rng, lo=2)
        velocity = [np.array([rng.uniform(-0.15, 0.15), 0.0, rng.uniform(-0.2, 0.2)]) for _ in drawn]
        for f in range(frames):
            moved = [(col, c + f * vel, sph, ext) for (col, c, sph, ext), vel in zip(drawn, velocity)]
            (image, *_), owner, shapes = trace(moved, size)
            name = f"v{v}f{f}"
            png(os.path.join(out, "images", f"{name}.png"), np.round(image * 255))
            png(os.path.join(out, "instances", f"{name}.png"), owner + 1)
            for k, s in enumerate(shapes):
                area = int((owner == k).sum())
                if area > 0:
                    rows.append(f"{name}_{k},{name},{k + 1},{s},{area},o{k},v{v},{f}")
    with open(os.path.join(out, "objects.csv"), "w") as fh:
        fh.write("\n".join(rows) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?", default="data/demo/scenes")
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=20240501)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    os.makedirs(os.path.join(a.out, "images"), exist_ok=True)
    os.makedirs(os.path.join(a.out, "labels"), exist_ok=True)
    os.makedirs(os.path.join(a.out, "objmasks"), exist_ok=True)
    rows = ["name,objects,foreground"]
    objects_rows = ["stimulus,class"]
    all_rows = ["stimulus,image,mask_value,class,area"]
    os.makedirs(os.path.join(a.out, "instances"), exist_ok=True)
    for i in range(a.n):
        name = f"scene{i:03d}"
        (image, fg, depth, shading, objects, main, shape), owner, shapes = render(rng, a.size)
        # Every visible object: an instance map (value k + 1 for object k) and a table row.
        png(os.path.join(a.out, "instances", f"{name}.png"), owner + 1)
        for k, s in enumerate(shapes):
            area = int((owner == k).sum())
            if area > 0:
                all_rows.append(f"{name}_{k},{name},{k + 1},{s},{area}")
        png(os.path.join(a.out, "images", f"{name}.png"), np.round(image * 255))
        png(os.path.join(a.out, "labels", f"{name}.mask.png"), fg * 255)
        np.save(os.path.join(a.out, "labels", f"{name}.depth.npy"), depth)
        np.save(os.path.join(a.out, "labels", f"{name}.shading.npy"), shading)
        rows.append(f"{name},{objects},{fg.mean():.6f}")
        png(os.path.join(a.out, "objmasks", f"{name}.png"), main * 255)
        objects_rows.append(f"{name},{shape}")
    with open(os.path.join(a.out, "scenes.csv"), "w") as f:
        f.write("\n".join(rows) + "\n")
    with open(os.path.join(a.out, "objects.csv"), "w") as f:
        f.write("\n".join(objects_rows) + "\n")
    with open(os.path.join(a.out, "all_objects.csv"), "w") as f:
        f.write("\n".join(all_rows) + "\n")
    videos(os.path.join(a.out, "videos"), np.random.default_rng(a.seed + 1), a.size)
    print(f"make_scenes: {a.n} scenes of {a.size} x {a.size} in {a.out}")


if __name__ == "__main__":
    main()
