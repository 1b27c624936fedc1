8
j1 (€Ð•ÿ¼10’!:	2 step(s)@Jboot-aPôÓ•ÿ¼1zrun-j16
j2 (€Ð•ÿ¼10’!:	2 step(s)Jboot-aPôÓ•ÿ¼1zrun-j2