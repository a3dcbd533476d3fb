// golibcni drives Go's reference libcni (Debian's golang-github-appc-cni-dev)
// so tests can check that its result cache and ours are interchangeable.
//
//	golibcni add|check|del <conflist file> <containerID> <netns> <ifname> <cacheDir>
//
// CNI_PATH comes from the environment; ADD prints the result as JSON.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"

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
	switch cmd {
	case "add":
		res, err := cni.AddNetworkList(ctx, list, rt)
		if err == nil {
			out, _ := json.Marshal(res)
			fmt.Println(string(out))
		}
		exit(err)
	case "check":
		exit(cni.CheckNetworkList(ctx, list, rt))
	case "del":
		exit(cni.DelNetworkList(ctx, list, rt))
	}
}

func exit(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
