/* net/http.c — placeholder until the HTTP layer lands */
