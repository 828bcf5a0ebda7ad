{
  "targets": [{
    "target_name": "tessera_native",
    "sources": ["fuse_session.c", "fs_extra.c", "chunk_file.c", "module.c"],
    "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-D_FILE_OFFSET_BITS=64"],
    "include_dirs": ["<!@(pkg-config --cflags-only-I fuse3 | sed 's/-I//g')"],
    "libraries": ["<!@(pkg-config --libs fuse3)"]
  }]
}
