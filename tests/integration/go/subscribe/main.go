// A SubscribeToShard client on the AWS SDK for Go v1 (Debian's golang-github-aws-aws-sdk-go-dev,
// built offline in GOPATH mode by test_subscribe_go.py). It subscribes from TRIM_HORIZON and
// prints one line per record ("<sequence number> <base64 data>") and one "empty" line per empty
// event, until it has seen want records and at least one empty event, then exits 0.
//
// Usage: subscribe ENDPOINT CONSUMER_ARN SHARD_ID WANT
package main

import (
	"encoding/base64"
	"fmt"
	"os"
	"strconv"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/credentials"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/kinesis"
)

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: subscribe ENDPOINT CONSUMER_ARN SHARD_ID WANT")
		os.Exit(2)
	}
	want, _ := strconv.Atoi(os.Args[4])
	sess := session.Must(session.NewSession(&aws.Config{
		Endpoint:    aws.String(os.Args[1]),
		Region:      aws.String("us-east-1"),
		DisableSSL:  aws.Bool(true),
		Credentials: credentials.NewStaticCredentials("local", "local", ""),
		MaxRetries:  aws.Int(0),
	}))
	k := kinesis.New(sess)
	out, err := k.SubscribeToShard(&kinesis.SubscribeToShardInput{
		ConsumerARN:      aws.String(os.Args[2]),
		ShardId:          aws.String(os.Args[3]),
		StartingPosition: &kinesis.StartingPosition{Type: aws.String("TRIM_HORIZON")},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "subscribe:", err)
		os.Exit(1)
	}
	stream := out.GetStream()
	defer stream.Close()
	got, empty := 0, 0
	for ev := range stream.Events() {
		e, ok := ev.(*kinesis.SubscribeToShardEvent)
		if !ok {
			continue
		}
		if len(e.Records) == 0 {
			empty++
			fmt.Println("empty")
		}
		for _, r := range e.Records {
			fmt.Println(*r.SequenceNumber, base64.StdEncoding.EncodeToString(r.Data))
			got++
		}
		if got >= want && empty > 0 {
			return
		}
	}
	if err := stream.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "stream:", err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, "stream ended early")
	os.Exit(1)
}
