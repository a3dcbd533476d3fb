// golibcni drives Go's reference libcni (Debian's golang-github-appc-cni-dev)
// so tests can check that its result cache and ours are interchangeable.
//
//	golibcni add|check|del <conflist file> <containerID> <netns> <ifname> <cacheDir>
//
// CNI_PATH comes from the environment; ADD prints the result as JSON. With
// GOLIBCNI_TIMING=1 it also prints the operation's own duration to stderr
// ("elapsed_ns N"), for bench/: libcni's work without this process's start.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
)

func main() {
	cmd, file, cid, netns, ifname, cache := os.Args[1], os.Args[2], os.Args[3], os.Args[4], os.Args[5], os.Args[6]
	list, err := libcni.ConfListFromFile(file)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cni := libcni.NewCNIConfigWithCacheDir(strings.Split(os.Getenv("CNI_PATH"), ":"), cache, nil)
	rt := &libcni.RuntimeConf{ContainerID: cid, NetNS: netns, IfName: ifname}
	ctx := context.Background()
	start := time.Now()
	switch cmd {
	case "add":
		res, err := cni.AddNetworkList(ctx, list, rt)
		timing(start)
		if err == nil {
			out, _ := json.Marshal(res)
			fmt.Println(string(out))
		}
		exit(err)
	case "check":
		err := cni.CheckNetworkList(ctx, list, rt)
		timing(start)
		exit(err)
	case "del":
		err := cni.DelNetworkList(ctx, list, rt)
		timing(start)
		exit(err)
	}
}

func timing(start time.Time) {
	if os.Getenv("GOLIBCNI_TIMING") == "1" {
		fmt.Fprintf(os.Stderr, "elapsed_ns %d\n", time.Since(start).Nanoseconds())
	}
}

func exit(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
