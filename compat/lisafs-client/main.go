// Copyright 2026 The gVisor-rs Authors.
// SPDX-License-Identifier: Apache-2.0

// Command lisafs-client drives a gofer with upstream's own Go lisafs client
// (gvisor.dev/gvisor/pkg/lisafs, the 2022 release Debian packages as
// golang-gvisor-gvisor-dev) and prints a transcript of what it saw, with
// everything that depends on the inode allocator or the clock left out, so
// that two gofers serving identical trees can be compared line for line.
//
// It connects over the lisafs socket it finds at file descriptor 3
// (--fd), mounts, and runs one fixed sequence: walk, walkstat, stat, open
// (and a read through the donated host FD), read, write, create, mkdir,
// symlink, readlink, link, rename, setstat, getdents, statfs, the xattr
// calls, unlink, and a few refused requests.
//
// --mode=channel (the Go client's normal behaviour) sends every RPC over
// the flipcall channels it opens after Mount; --mode=socket hides those
// channels from the client before the sequence so every RPC takes the
// socket. The transcript's first lines say which was used.
//
// Build (the 2022 sources carry `!go1.21` build constraints, so Go 1.19,
// Debian's golang-1.19-go, in GOPATH mode):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode /usr/lib/go-1.19/bin/go build -o lisafs-client .
//
// runsc/tests/go_lisafs_client.rs builds it that way and compares its
// transcript against our `runsc gofer` and Debian's.
package main

import (
	"flag"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/abi/linux"
	"gvisor.dev/gvisor/pkg/context"
	"gvisor.dev/gvisor/pkg/lisafs"
	"gvisor.dev/gvisor/pkg/unet"
)

var (
	fdFlag   = flag.Int("fd", 3, "the lisafs socket's file descriptor")
	modeFlag = flag.String("mode", "channel", "socket or channel: where RPCs go")
)

const noID = 0xffffffff

var out []string

func say(format string, args ...interface{}) {
	out = append(out, fmt.Sprintf(format, args...))
}

// st renders the stat fields that do not depend on the inode allocator
// or the clock (directory sizes depend on the filesystem's history).
func st(s *linux.Statx) string {
	size := s.Size
	if s.Mode&linux.S_IFMT == linux.S_IFDIR {
		size = 0
	}
	return fmt.Sprintf("mode=%o size=%d nlink=%d uid=%d gid=%d", s.Mode, size, s.Nlink, s.UID, s.GID)
}

func errStr(err error) string {
	if e, ok := err.(unix.Errno); ok {
		return "error " + unix.ErrnoName(e)
	}
	return fmt.Sprintf("error %v", err)
}

func inodes(ins []lisafs.Inode) string {
	var parts []string
	for i := range ins {
		parts = append(parts, fmt.Sprintf("#%d %s", ins[i].ControlFD, st(&ins[i].Stat)))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// field returns the client's unexported field `name`, writable.
func field(c *lisafs.Client, name string) reflect.Value {
	f := reflect.ValueOf(c).Elem().FieldByName(name)
	return reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem()
}

func main() {
	flag.Parse()
	sock, err := unet.NewSocket(*fdFlag)
	if err != nil {
		fmt.Fprintf(os.Stderr, "lisafs-client: fd %d is not a socket: %v\n", *fdFlag, err)
		os.Exit(2)
	}
	client, root, err := lisafs.NewClient(sock)
	if err != nil {
		fmt.Fprintf(os.Stderr, "lisafs-client: mount: %v\n", err)
		os.Exit(1)
	}
	// The client mounts and opens its channels in NewClient; nothing else
	// has run yet, so its channel stack can be read (and, for socket mode,
	// emptied) without its lock.
	idle := field(client, "availableChannels")
	say("channels opened: %t", idle.Len() > 0)
	switch *modeFlag {
	case "socket":
		idle.Set(reflect.MakeSlice(idle.Type(), 0, idle.Cap()))
	case "channel":
	default:
		fmt.Fprintf(os.Stderr, "lisafs-client: --mode is socket or channel\n")
		os.Exit(2)
	}
	say("mode: %s", *modeFlag)
	run(client, root)
	client.Close()
	fmt.Println(strings.Join(out, "\n"))
}

func run(c *lisafs.Client, rootIno lisafs.Inode) {
	ctx := context.Background()
	root := c.NewFD(rootIno.ControlFD)
	say("mount: #%d %s", rootIno.ControlFD, st(&rootIno.Stat))

	walk := func(what string, dir lisafs.ClientFD, names ...string) []lisafs.Inode {
		status, ins, err := dir.WalkMultiple(ctx, names)
		if err != nil {
			say("walk %s: %s", what, errStr(err))
			return nil
		}
		say("walk %s: status %d %s", what, status, inodes(ins))
		return ins
	}
	file := walk("file.txt", root, "file.txt")
	dirA := walk("dir/a", root, "dir", "a")
	walk("link/x", root, "link", "x")
	walk("missing", root, "missing")
	walk("..", root, "..")

	stats, err := root.WalkStat(ctx, []string{"", "dir", "a"})
	if err != nil {
		say("walkstat: %s", errStr(err))
	} else {
		var parts []string
		for i := range stats {
			parts = append(parts, st(&stats[i]))
		}
		say("walkstat ''/dir/a: [%s]", strings.Join(parts, ", "))
	}

	fileFD := c.NewFD(file[0].ControlFD)
	var s linux.Statx
	if err := fileFD.StatTo(ctx, &s); err != nil {
		say("stat file: %s", errStr(err))
	} else {
		say("stat file: %s", st(&s))
	}

	// Open and read, through the gofer and through the donated host FD.
	openID, hostFD, err := fileFD.OpenAt(ctx, unix.O_RDONLY)
	if err != nil {
		say("open file: %s", errStr(err))
	} else {
		say("open file: #%d hostfd=%t", openID, hostFD >= 0)
		if hostFD >= 0 {
			buf := make([]byte, 64)
			n, err := unix.Pread(hostFD, buf, 0)
			say("pread host fd: %q %v", buf[:n], err)
			unix.Close(hostFD)
		}
		buf := make([]byte, 100)
		openFD := c.NewFD(openID)
		n, err := openFD.Read(ctx, buf, 6)
		say("read file at 6: %q %v", buf[:n], err)
	}
	dirFD := c.NewFD(dirA[0].ControlFD)
	if _, _, err := dirFD.OpenAt(ctx, unix.O_RDWR); err != nil {
		say("open dir rdwr: %s", errStr(err))
	}
	if _, err := fileFD.ReadLinkAt(ctx); err != nil {
		say("readlink file: %s", errStr(err))
	}

	// Create and write.
	newIno, newOpen, newHost, err := root.OpenCreateAt(ctx, "new", unix.O_RDWR, 0640, noID, noID)
	if err != nil {
		say("create new: %s", errStr(err))
		return
	}
	say("create new: #%d %s open #%d hostfd=%t", newIno.ControlFD, st(&newIno.Stat), newOpen, newHost >= 0)
	if newHost >= 0 {
		unix.Close(newHost)
	}
	newFD := c.NewFD(newOpen)
	nw, err := newFD.Write(ctx, []byte("written"), 3)
	say("write new at 3: %d %v", nw, err)
	buf := make([]byte, 100)
	nr, err := newFD.Read(ctx, buf, 0)
	say("read new: %q %v", buf[:nr], err)
	say("sync new: %v", newFD.Sync(ctx))
	if _, _, _, err := root.OpenCreateAt(ctx, "new", unix.O_RDWR, 0640, noID, noID); err != nil {
		say("create new again: %s", errStr(err))
	}

	// Directories and links.
	newdir, err := root.MkdirAt(ctx, "newdir", 0751, noID, noID)
	if err != nil {
		say("mkdir: %s", errStr(err))
		return
	}
	say("mkdir newdir: #%d %s", newdir.ControlFD, st(&newdir.Stat))
	newdirFD := c.NewFD(newdir.ControlFD)
	if _, err := root.MkdirAt(ctx, "dir", 0751, noID, noID); err != nil {
		say("mkdir dir: %s", errStr(err))
	}
	sl, err := newdirFD.SymlinkAt(ctx, "sl", "../file.txt", noID, noID)
	if err != nil {
		say("symlink: %s", errStr(err))
	} else {
		say("symlink newdir/sl: #%d %s", sl.ControlFD, st(&sl.Stat))
		slFD := c.NewFD(sl.ControlFD)
		target, err := slFD.ReadLinkAt(ctx)
		say("readlink newdir/sl: %q %v", target, err)
	}
	hard, err := newdirFD.LinkAt(ctx, file[0].ControlFD, "hard")
	if err != nil {
		say("link: %s", errStr(err))
	} else {
		say("link newdir/hard: #%d %s", hard.ControlFD, st(&hard.Stat))
	}

	// Rename, then change attributes of the moved file.
	say("rename new -> newdir/moved: %v", root.RenameAt(ctx, "new", newdir.ControlFD, "moved"))
	if err := root.RenameAt(ctx, "nope", root.ID(), "x"); err != nil {
		say("rename missing: %s", errStr(err))
	}
	moved := walk("newdir/moved", root, "newdir", "moved")
	if len(moved) == 2 {
		movedFD := c.NewFD(moved[1].ControlFD)
		req := linux.Statx{Mask: linux.STATX_MODE | linux.STATX_SIZE, Mode: 0600, Size: 4}
		failMask, failErr, err := movedFD.SetStat(ctx, &req)
		say("setstat moved mode+size: failmask=%#x failerr=%d err=%v", failMask, failErr, err)
		var ms linux.Statx
		if err := movedFD.StatTo(ctx, &ms); err != nil {
			say("stat moved: %s", errStr(err))
		} else {
			say("stat moved: %s", st(&ms))
		}
	}

	// Directory listings, read to the end.
	listing := func(what string, dir lisafs.ClientFD) {
		id, _, err := dir.OpenAt(ctx, unix.O_RDONLY)
		if err != nil {
			say("open %s: %s", what, errStr(err))
			return
		}
		fd := c.NewFD(id)
		var names []string
		count := int32(-65536)
		for {
			ds, err := fd.Getdents64(ctx, count)
			if err != nil {
				say("getdents %s: %s", what, errStr(err))
				return
			}
			if len(ds) == 0 {
				break
			}
			for _, d := range ds {
				names = append(names, fmt.Sprintf("%s:%d", d.Name, d.Type))
			}
			count = 65536
		}
		sort.Strings(names)
		say("getdents %s: [%s]", what, strings.Join(names, " "))
		fd.Close(ctx, true)
	}
	listing("root", root)
	listing("newdir", newdirFD)

	var sfs lisafs.StatFS
	if err := root.StatFSTo(ctx, &sfs); err != nil {
		say("statfs: %s", errStr(err))
	} else {
		say("statfs: namelen=%d", sfs.NameLength)
	}

	// Extended attributes. The 2022 Go gofer refuses them all
	// (EOPNOTSUPP, and FListXattr/FRemoveXattr are not even advertised);
	// these lines are tagged so a comparison can tell them apart.
	say("xattr set: %v", fileFD.SetXattr(ctx, "user.test", "value", 0))
	v, err := fileFD.GetXattr(ctx, "user.test", 0)
	say("xattr get: %q %v", v, err)
	names, err := fileFD.ListXattr(ctx, 0)
	say("xattr list: %q %v", names, err)
	say("xattr remove: %v", fileFD.RemoveXattr(ctx, "user.test"))
	v, err = fileFD.GetXattr(ctx, "user.test", 0)
	say("xattr get removed: %q %v", v, err)

	// Unlinks.
	say("unlink newdir/sl: %v", newdirFD.UnlinkAt(ctx, "sl", 0))
	say("unlink newdir/hard: %v", newdirFD.UnlinkAt(ctx, "hard", 0))
	if err := root.UnlinkAt(ctx, "newdir", unix.AT_REMOVEDIR); err != nil {
		say("rmdir nonempty newdir: %s", errStr(err))
	}
	if err := root.UnlinkAt(ctx, "missing", 0); err != nil {
		say("unlink missing: %s", errStr(err))
	}
	say("unlink newdir/moved: %v", newdirFD.UnlinkAt(ctx, "moved", 0))
	say("rmdir newdir: %v", root.UnlinkAt(ctx, "newdir", unix.AT_REMOVEDIR))
	walk("newdir after rmdir", root, "newdir")
}
