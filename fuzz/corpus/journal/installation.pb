5f0c2a9e13d4b7866
j1 (€Ð•ÿ¼10’!:	2 step(s)Jboot-aPôÓ•ÿ¼1zrun-j18
j2 (€Ð•ÿ¼10’!:	2 step(s)@Jboot-aPôÓ•ÿ¼1zrun-j2