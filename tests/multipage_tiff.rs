//! Multi-page TIFF input (ImageJ/Fiji stacks, OME-TIFF): a file of N pages, given as the file
//! or as a folder holding just it, is a stack of N slices, read page by page; every level
//! equals the naive pyramid (by bands of rows and whole); a page of another size is an error
//! naming the file and the page; a damaged later page does not stop earlier ones from being
//! read; rewriting the file invalidates the cached slices of every page.

mod common;

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use common::{assert_naive, phantom_volume, values};
use lodcache::{PairReducer, Phantom, Pyramid, SampleType, Slice, Stack};
use tiff::encoder::{TiffEncoder, colortype};

/// Writes the phantom's slices as the pages of one TIFF (BigTIFF when `big`), with the slice
/// at `odd` (if any) one pixel narrower.
fn write_pages(p: &Phantom, path: &Path, big: bool, odd: Option<u32>) {
    let file = std::fs::File::create(path).unwrap();
    let pages = |enc: &mut dyn FnMut(u32, u32, &Slice)| {
        for z in 0..p.depth() {
            let s = p.slice(z);
            enc(s.width(), s.height(), &s);
        }
    };
    macro_rules! write_all {
        ($enc:expr) => {{
            let mut enc = $enc;
            pages(&mut |w, h, s: &Slice| {
                let narrow = odd == Some(s_index(s, p));
                let w2 = if narrow { w - 1 } else { w };
                match s.pixels() {
                    lodcache::Pixels::U16(v) => {
                        let rows: Vec<u16> = v
                            .chunks(w as usize)
                            .flat_map(|r| r[..w2 as usize].to_vec())
                            .collect();
                        enc.write_image::<colortype::Gray16>(w2, h, &rows).unwrap();
                    }
                    lodcache::Pixels::U8(v) => {
                        let rows: Vec<u8> = v
                            .chunks(w as usize)
                            .flat_map(|r| r[..w2 as usize].to_vec())
                            .collect();
                        enc.write_image::<colortype::Gray8>(w2, h, &rows).unwrap();
                    }
                    _ => unreachable!(),
                }
            });
        }};
    }
    if big {
        write_all!(TiffEncoder::new_big(file).unwrap());
    } else {
        write_all!(TiffEncoder::new(file).unwrap());
    }
}

/// Which slice of the phantom `s` is (its pixels are unique per slice for these phantoms).
fn s_index(s: &Slice, p: &Phantom) -> u32 {
    (0..p.depth()).find(|&z| &p.slice(z) == s).unwrap()
}

#[test]
fn pages_are_slices_given_as_the_file_or_its_folder() {
    let tmp = tempfile::tempdir().unwrap();
    for (i, (p, big)) in [
        (Phantom::new(75, 53, 9), false),
        (
            Phantom::new(66, 41, 6).with_sample_type(SampleType::U8),
            false,
        ),
        (Phantom::new(40, 34, 5), true),
    ]
    .into_iter()
    .enumerate()
    {
        let folder = tmp.path().join(format!("f{i}"));
        std::fs::create_dir(&folder).unwrap();
        // A name without digits (not a slice name) and a log beside it.
        let file = folder.join("stack.tif");
        write_pages(&p, &file, big, None);
        std::fs::write(folder.join("notes.log"), b"not a scanner log").unwrap();
        let naive = phantom_volume(&p).pyramid(16);
        for given in [&file, &folder] {
            let stack = Stack::open(given).unwrap();
            assert_eq!(stack.depth(), p.depth(), "{given:?}");
            assert!(
                stack
                    .files()
                    .iter()
                    .all(|f| f.path == file && f.page.is_some())
            );
            for z in 0..p.depth() {
                assert_eq!(
                    values(&stack.read_slice(z).unwrap()),
                    naive[0].slices[z as usize]
                );
            }
            // Level 1 by bands of rows (uncompressed strips) equals the naive one.
            let mut reducer = PairReducer::new(&stack);
            let mut out = Slice::zeroed(0, 0, p.sample_type());
            for z in 0..p.depth().div_ceil(2) {
                reducer.reduce_pair(z, &mut out).unwrap();
                assert_naive("pair", &naive, 1, z, &out);
            }
        }
        // The whole pyramid, lazily and whole, with a cache folder.
        let pyr = Pyramid::builder(&file)
            .with_edge(16)
            .with_cache_dir(tmp.path().join(format!("cache{i}")))
            .build()
            .unwrap();
        assert_eq!(pyr.levels().len(), naive.len());
        for (n, level) in naive.iter().enumerate() {
            for z in 0..level.slices.len() as u32 {
                assert_naive(
                    "lazy",
                    &naive,
                    n as u32,
                    z,
                    &pyr.slice(n as u32, z).unwrap(),
                );
            }
            let v = pyr.volume(n as u32).unwrap();
            for z in 0..v.depth() {
                assert_naive("volume", &naive, n as u32, z, &v.slice(z).unwrap());
            }
        }
    }
}

/// A multi-page file named like a slice (`scan_0001.tif`), alone in its folder: before, it was
/// read as a one-slice stack (page 0), silently.
#[test]
fn a_slice_named_multi_page_file_is_all_its_pages() {
    let tmp = tempfile::tempdir().unwrap();
    let p = Phantom::new(33, 21, 7);
    write_pages(&p, &tmp.path().join("scan_0001.tif"), false, None);
    let stack = Stack::open(tmp.path()).unwrap();
    assert_eq!(stack.depth(), 7);
    assert_eq!(values(&stack.read_slice(6).unwrap()), values(&p.slice(6)));
    // A page read counts its samples, not the whole file, as bytes read.
    let mut reader = stack.reader();
    let mut s = Slice::zeroed(0, 0, SampleType::U16);
    for z in 0..7 {
        reader.read_into(z, &mut s).unwrap();
    }
    assert_eq!(reader.bytes_read(), 7 * 33 * 21 * 2);
}

#[test]
fn a_page_of_another_size_names_the_file_and_the_page() {
    let tmp = tempfile::tempdir().unwrap();
    let p = Phantom::new(30, 20, 6);
    let file = tmp.path().join("odd.tif");
    write_pages(&p, &file, false, Some(3));
    let stack = Stack::open(&file).unwrap();
    assert_eq!(stack.depth(), 6);
    stack.read_slice(2).unwrap();
    let e = stack.read_slice(3).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("page 3") && msg.contains("odd.tif") && msg.contains("29 x 20"),
        "{msg}"
    );
    assert!(matches!(&e, lodcache::Error::Page { page: 3, source, .. }
        if matches!(**source, lodcache::Error::SizeMismatch { .. })));
    assert_eq!(e.kind(), lodcache::ErrorKind::Data);
    // The streaming build stops on it with the same error.
    let pyr = Pyramid::builder(&file)
        .with_edge(8)
        .with_disk_cache(false)
        .build()
        .unwrap();
    let msg = pyr.volume(1).unwrap_err().to_string();
    assert!(msg.contains("page 3") && msg.contains("odd.tif"), "{msg}");
}

#[test]
fn pages_are_read_lazily_a_damaged_last_page_spares_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let p = Phantom::new(64, 48, 5);
    let file = tmp.path().join("s.tif");
    write_pages(&p, &file, false, None);
    let stack = Stack::open(&file).unwrap();
    // Zero the last page's directory entry count: its tags are gone, the rest is intact.
    let last = stack.files()[4].page.unwrap().ifd;
    let mut f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    f.seek(SeekFrom::Start(last)).unwrap();
    f.write_all(&[0, 0]).unwrap();
    drop(f);
    for z in 0..4 {
        assert_eq!(values(&stack.read_slice(z).unwrap()), values(&p.slice(z)));
    }
    let msg = stack.read_slice(4).unwrap_err().to_string();
    assert!(msg.contains("page 4") && msg.contains("s.tif"), "{msg}");
}

#[test]
fn rewriting_the_file_invalidates_every_page() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("s.tif");
    let cache = tmp.path().join("cache");
    let a = Phantom::new(40, 40, 4);
    let b = Phantom::new(40, 40, 4).with_seed(99);
    write_pages(&a, &file, false, None);
    let open = || {
        Pyramid::builder(&file)
            .with_edge(8)
            .with_cache_dir(&cache)
            .build()
            .unwrap()
    };
    let pyr = open();
    let before = pyr.volume(2).unwrap();
    pyr.flush();
    drop(pyr);
    // Same size, new content: every page changes.
    std::thread::sleep(std::time::Duration::from_millis(20));
    write_pages(&b, &file, false, None);
    let pyr = open();
    let naive = phantom_volume(&b).pyramid(8);
    for n in 1..naive.len() as u32 {
        for z in 0..naive[n as usize].slices.len() as u32 {
            assert_naive("after rewrite", &naive, n, z, &pyr.slice(n, z).unwrap());
        }
    }
    assert_ne!(before.pixels(), pyr.volume(2).unwrap().pixels());
}
