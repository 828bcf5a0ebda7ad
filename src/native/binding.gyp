# The native addon. zstd (for the build's compression, src/native/segment.c)
# is built from the sources the zstd-napi package ships (zstd 1.5.7), which
# compressed a 164 MB rootfs with 0.18 core-seconds less than Debian 12's
# libzstd 1.5.4 did, and needs no -dev package.
{
  "targets": [{
    "target_name": "tessera_native",
    "sources": ["fuse_session.c", "read_stream.c", "fs_extra.c", "chunk_file.c", "sha256_many.c", "segment.c", "module.c"],
    "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-D_FILE_OFFSET_BITS=64"],
    "include_dirs": ["<!@(pkg-config --cflags-only-I fuse3 | sed 's/-I//g')"],
    "libraries": ["<!@(pkg-config --libs fuse3)"],
    "dependencies": ["../../node_modules/zstd-napi/deps/zstd.gyp:libzstd"]
  }]
}
