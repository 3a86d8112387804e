package redisrate_test

const replicaEnv = "MUSTER_REDISRATE_REPLICA"

func replicaMain() int { return 0 }
